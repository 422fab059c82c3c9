"""The Ray backend on a local Ray (2 CPUs): the local backend's results, and the cache honoured."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from goldenpath.evals import load_task, run_task
from tests.evals.fake_openai import FakeUpstream, serve


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def upstream(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeUpstream]:
    monkeypatch.setenv("GOLDENPATH_API_KEY", "test-key")
    with serve() as fake:
        yield fake


def items(path: Path) -> dict[tuple[str, int], dict[str, Any]]:
    return {(r["item_id"], r["epoch"]): r for r in map(json.loads, path.read_text().splitlines())}


async def test_ray_gives_the_local_results_and_uses_the_cache(
    ray_cluster: Any, upstream: FakeUpstream, tmp_path: Path
) -> None:
    rows = [
        {
            "id": f"q{i}",
            "input": json.dumps({"reasoning": "r", "score": i % 5}),
            "expected": "score" if i % 3 else "reasoning",
        }
        for i in range(30)
    ]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "task.yaml").write_text(
        f"name: ray-echo\ndataset: data.jsonl\ntarget: {{model: echo, base_url: '{upstream.base_url}'}}\n"
        "epochs: 2\nmax_concurrency: 4\nscorers:\n  - name: contains\n  - name: rouge_l\n"
        "  - name: llm_judge\n    params: {model: judge, rubric: '{{ output }}', scale: [0, 4], repeats: 2}\n"
    )
    task = load_task(tmp_path / "task.yaml")
    local = await run_task(task, run_dir=tmp_path / "local", progress=False, cache_path=tmp_path / "local.db")
    calls = upstream.calls
    remote = await run_task(
        task, run_dir=tmp_path / "ray", progress=False, cache_path=tmp_path / "ray.db", backend="ray"
    )
    assert upstream.calls - calls == calls == 60 * 3, "every item on Ray: one target call, two verdicts"
    assert (remote.scored, remote.errors, remote.called) == (60, 0, 60)
    a, b = items(tmp_path / "local" / "results.jsonl"), items(tmp_path / "ray" / "results.jsonl")
    assert {k: v["scores"] for k, v in a.items()} == {k: v["scores"] for k, v in b.items()}
    assert {k: v["details"] for k, v in a.items()} == {k: v["details"] for k, v in b.items()}
    assert remote.metrics == local.metrics and remote.tokens == local.tokens
    assert json.loads((tmp_path / "ray" / "run.json").read_text())["backend"] == "ray"

    again = await run_task(
        task, run_dir=tmp_path / "ray-again", progress=False, cache_path=tmp_path / "ray.db", backend="ray"
    )
    assert (again.cached, again.called, upstream.calls) == (60, 0, 2 * calls), "served from the cache, no Ray work"
