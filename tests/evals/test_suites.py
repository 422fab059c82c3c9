"""The built-in QA suite and the LLM judge, for real, against the embedded SmolLM2: in process, and
through a running gateway."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from goldenpath.evals import Task, load_task, run_task
from tests.conftest import ADMIN_KEY, start_gateway

pytestmark = pytest.mark.models

SMOLLM2 = "smollm2-135m-instruct"
RUBRIC = """Question: {{ question }}
Reference answers: {{ expected | join(" / ") if expected else "(none)" }}
Response: {{ output }}

Give 5 if the response matches a reference answer, 1 if it does not."""


async def test_squad_suite_in_process_against_the_embedded_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOLDENPATH_HOME", str(tmp_path / "home"))  # the in-process gateway's data directory
    task = load_task("builtin:squad-qa").model_copy(update={"limit": 4})
    first = await run_task(task, run_dir=tmp_path / "run", progress=False, cache_path=tmp_path / "cache.db")
    assert (first.scored, first.errors, first.called) == (4, 0, 4)
    assert {"squad_em", "squad_f1", "answer_contains"} <= set(first.metrics)
    assert first.tokens.completion > 0
    again = await run_task(task, run_dir=tmp_path / "rerun", progress=False, cache_path=tmp_path / "cache.db")
    assert (again.cached, again.called) == (4, 0)


async def test_llm_judge_with_the_embedded_model_through_a_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config: dict[str, object] = {
        "models": [{"name": SMOLLM2, "deployments": [{"provider": "llamacpp", "model": SMOLLM2, "n_ctx": 2048}]}]
    }
    (tmp_path / "gw").mkdir()
    gw = start_gateway(tmp_path / "gw", config)
    monkeypatch.setenv("GOLDENPATH_API_KEY", ADMIN_KEY)
    try:
        suite = load_task("builtin:squad-qa").model_dump(exclude={"target", "scorers", "limit"})
        judge = {"model": SMOLLM2, "rubric": RUBRIC, "scale": [1, 5], "repeats": 2, "seed": 3}
        task = Task.model_validate(
            suite
            | {
                "limit": 3,
                "target": {"model": SMOLLM2, "base_url": gw.base_url},
                "scorers": [{"name": "squad"}, {"name": "llm_judge", "params": judge}],
            }
        )
        summary = await run_task(task, run_dir=tmp_path / "run", progress=False, cache_path=tmp_path / "cache.db")
    finally:
        gw.stop()
    assert (summary.scored, summary.errors, summary.called) == (3, 0, 3)
    results = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    for line in results:
        assert 1 <= line["scores"]["judge"] <= 5
        details = line["details"]["llm_judge"]
        assert details["model"] == SMOLLM2 and details["prompt"][1]["content"].startswith("Question: ")
        assert [r["seed"] for r in details["repeats"]] == [3, 4]
        assert all(r["response_format"] and r["reasoning"] for r in details["repeats"]), "json_schema was honoured"
    judged = sum(line["details"]["llm_judge"]["tokens"]["total"] for line in results)
    answered = sum(line["tokens"]["total"] for line in results)
    assert summary.tokens.total == judged + answered
