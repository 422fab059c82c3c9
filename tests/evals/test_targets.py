"""Targets: an in-process gateway, a retrieval collection (the SciFact suite) and the injection detector
(the prompt-injection suite), in process and through a running gateway's /v1/guard/check."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import ir_measures
import pytest
import yaml
from click.testing import CliRunner

from goldenpath.evals import (
    DetectorTarget,
    TargetError,
    detection_summary,
    load_results,
    load_task,
    run_command,
    run_task,
)
from tests.conftest import ADMIN_KEY, start_gateway
from tests.evals.fake_openai import FakeUpstream, serve
from tests.evals.tfidf_retriever import TfidfRetriever

CARD = Path(__file__).parents[2] / "goldenpath" / "guard" / "artifacts" / "injection_card.json"
VERDICT = '{"reasoning": "r", "score": %d}'


@pytest.fixture
def upstream(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeUpstream]:
    monkeypatch.delenv("GOLDENPATH_API_KEY", raising=False)
    monkeypatch.delenv("GOLDENPATH_ADMIN_KEY", raising=False)
    monkeypatch.setenv("GOLDENPATH_HOME", str(tmp_path / "home"))
    with serve() as fake:
        yield fake


@pytest.fixture(scope="module")
def tfidf() -> TfidfRetriever:
    return TfidfRetriever()


def lines(path: Path) -> dict[str, dict[str, object]]:
    return {line["item_id"]: line for line in map(json.loads, path.read_text().splitlines())}


async def test_in_process_gateway_target(upstream: FakeUpstream, tmp_path: Path) -> None:
    def alias(name: str, model: str) -> dict[str, object]:
        return {"name": name, "deployments": [{"provider": "openai", "base_url": upstream.base_url, "model": model}]}

    config: dict[str, object] = {"models": [alias("answerer", "upstream-answerer"), alias("grader", "upstream-grader")]}
    (tmp_path / "gateway.yaml").write_text(yaml.safe_dump(config))
    rows = [{"id": f"q{i}", "input": VERDICT % i, "expected": VERDICT % i} for i in range(4)]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "task.yaml").write_text(
        "name: in-process\ndataset: data.jsonl\n"
        "target: {model: answerer, in_process: true, config: gateway.yaml}\n"
        "scorers:\n  - name: exact_match\n  - name: llm_judge\n"
        "    params: {model: grader, rubric: '{{ output }}', scale: [0, 5]}\n"
    )
    task = load_task(tmp_path / "task.yaml")
    assert task.gateway_aliases() == {"answerer", "grader"}

    summary = await run_task(task, run_dir=tmp_path / "run", progress=False)
    assert (summary.scored, summary.errors) == (4, 0), "no key in the environment: the gateway's own is used"
    assert summary.metrics == {"exact_match": 1.0, "judge": 1.5}
    # both went through the gateway's router: the upstream saw its deployment names, not the aliases
    assert sorted({body["model"] for body in upstream.requests}) == ["upstream-answerer", "upstream-grader"]
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["target"] == {"model": "answerer", "in_process": True, "config": "gateway.yaml"}

    missing = task.model_copy(update={"target": task.target.model_copy(update={"model": "nope"})})
    with pytest.raises(TargetError, match=r"no model 'nope' \(it has answerer, grader\)"):
        await run_task(missing, run_dir=tmp_path / "missing", progress=False)


async def test_scifact_suite_matches_ir_measures(tfidf: TfidfRetriever, tmp_path: Path) -> None:
    task = load_task("builtin:scifact-retrieval").model_copy(update={"limit": 40})
    summary = await run_task(
        task, run_dir=tmp_path / "run", retriever=tfidf, progress=False, cache_path=tmp_path / "c.db"
    )
    assert (summary.scored, summary.errors) == (40, 0)

    dataset = task.load_dataset()
    judged: dict[str, dict[str, int]] = {s.id: s.expected for s in dataset.samples}
    qrels = [ir_measures.Qrel(query, doc, grade) for query, docs in judged.items() for doc, grade in docs.items()]
    results = lines(tmp_path / "run" / "results.jsonl")
    rankings = {item: cast(list[str], line["output"]) for item, line in results.items()}
    run = [
        ir_measures.ScoredDoc(item, doc, float(len(ranking) - rank))
        for item, ranking in rankings.items()
        for rank, doc in enumerate(ranking)
    ]
    names = {"nDCG@10": "ndcg@10", "R@100": "recall@100", "RR": "mrr"}
    reference = list(ir_measures.iter_calc([ir_measures.parse_measure(m) for m in names], qrels, run))
    assert len(reference) == 3 * 40
    for metric in reference:
        ours = results[metric.query_id]["scores"][names[str(metric.measure)]]  # type: ignore[index]
        assert ours == pytest.approx(metric.value, abs=1e-12), (metric.query_id, metric.measure)
    assert 0.2 < summary.metrics["ndcg@10"] < 0.9 and summary.metrics["recall@100"] > summary.metrics["ndcg@10"]

    again = await run_task(
        task, run_dir=tmp_path / "again", retriever=tfidf, progress=False, cache_path=tmp_path / "c.db"
    )
    assert (again.cached, again.called) == (40, 0)

    with pytest.raises(TargetError, match="collection 'scifact' does not exist"):
        nowhere = task.model_copy(update={"target": task.target.model_copy(update={"data_dir": str(tmp_path / "x")})})
        await run_task(nowhere, run_dir=tmp_path / "none", progress=False, cache_path=tmp_path / "other.db")


@pytest.mark.models
async def test_scifact_suite_on_a_collection_of_the_retrieval_engine(tmp_path: Path) -> None:
    """The suite's default target: the engine's own collection on the data directory, ranked per document."""
    from goldenpath.evals import load_scifact_corpus
    from goldenpath.rag import AccessList, Document, Retriever

    task = load_task("builtin:scifact-retrieval").model_copy(update={"limit": 5})
    dataset = task.load_dataset()
    relevant = {doc for s in dataset.samples[:5] for doc in s.expected}
    corpus = load_scifact_corpus()
    chosen = [d for d in corpus if d.id in relevant] + [d for d in corpus[:150] if d.id not in relevant]
    retriever = Retriever(tmp_path / "home")
    retriever.create_collection("scifact", tenant="default")
    documents = [Document(id=d.id, title=d.title, text=d.text) for d in chosen]
    retriever.ingest("scifact", documents, acl=AccessList(tenants=frozenset({"default"})))
    retriever.close()
    target = task.target.model_copy(update={"data_dir": str(tmp_path / "home")})
    summary = await run_task(
        task.model_copy(update={"target": target}), run_dir=tmp_path / "run", progress=False, cache_path=tmp_path / "c"
    )
    assert (summary.scored, summary.errors) == (5, 0)
    assert summary.metrics["recall@100"] == 1.0  # every relevant abstract is among ~160
    assert summary.metrics["ndcg@10"] > 0.5
    rankings = [line["output"] for line in lines(tmp_path / "run" / "results.jsonl").values()]
    assert all(len(r) == len(set(r)) for r in rankings)  # documents, not chunks


def test_scifact_suite_from_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOLDENPATH_HOME", str(tmp_path / "home"))
    args = ["builtin:scifact-retrieval", "--limit", "5", "--quiet", "--run-dir", str(tmp_path / "run")]
    ran = CliRunner().invoke(run_command, [*args, "--retriever", "tests.evals.tfidf_retriever:open_scifact"])
    assert ran.exit_code == 0, ran.output
    assert "5/5 items scored" in ran.stdout and any(line.startswith("recall@100") for line in ran.stdout.splitlines())

    cached = CliRunner().invoke(run_command, [*args, "--no-resume"])
    assert cached.exit_code == 0 and "5 from the cache, 0 called" in cached.stdout, "no retriever needed"
    unconnected = CliRunner().invoke(run_command, [*args[:1], "--limit", "6", *args[3:], "--no-resume"])
    assert unconnected.exit_code == 2 and "collection 'scifact' does not exist" in unconnected.stderr
    wrong = CliRunner().invoke(run_command, ["builtin:squad-qa", "--retriever", "tests.evals.tfidf_retriever:nope"])
    assert wrong.exit_code == 2 and "--retriever is for a collection target" in wrong.stderr
    unknown = CliRunner().invoke(run_command, ["builtin:nope"])
    assert unknown.exit_code == 2 and "unknown suite 'builtin:nope' (built in: prompt-injection" in unknown.stderr


async def test_injection_suite_reproduces_the_guard_card(tmp_path: Path) -> None:
    task = load_task("builtin:prompt-injection")
    summary = await run_task(task, run_dir=tmp_path / "run", progress=False, cache_path=tmp_path / "c.db")
    assert (summary.scored, summary.errors) == (318, 0)
    found = detection_summary(load_results(tmp_path / "run" / "results.jsonl"))
    card = json.loads(CARD.read_text())["validation"]["cascade_with_rules"]
    assert found.tp + found.fn == 146
    assert found.precision is not None and found.recall is not None and found.f1 is not None
    assert (round(found.precision, 4), round(found.recall, 4), round(found.f1, 4), round(found.fpr or 0.0, 4)) == (
        card["precision"]["value"],
        card["recall"]["value"],
        card["f1"]["value"],
        card["fpr"]["value"],
    )
    line = next(iter(lines(tmp_path / "run" / "results.jsonl").values()))
    assert line["output"] in ("injection", "benign") and set(cast(dict[str, object], line["info"])) == {
        "score",
        "reason",
    }


async def test_injection_detector_through_a_gateway(
    upstream: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config: dict[str, object] = {
        "models": [{"name": "m", "deployments": [{"provider": "openai", "base_url": upstream.base_url, "model": "m"}]}]
    }
    (tmp_path / "gw").mkdir()
    gw = start_gateway(tmp_path / "gw", config)
    try:
        monkeypatch.setenv("GOLDENPATH_API_KEY", ADMIN_KEY)
        local = load_task("builtin:prompt-injection").model_copy(update={"limit": 40})
        remote = local.model_copy(
            update={"target": DetectorTarget(detector="prompt_injection", via="gateway", base_url=gw.base_url)}
        )
        assert remote.definition_hash != local.definition_hash
        a = await run_task(local, run_dir=tmp_path / "a", progress=False)
        b = await run_task(remote, run_dir=tmp_path / "b", progress=False)
    finally:
        gw.stop()
    assert (a.scored, b.scored) == (40, 40)
    outputs_a = {i: line["output"] for i, line in lines(tmp_path / "a" / "results.jsonl").items()}
    outputs_b = {i: line["output"] for i, line in lines(tmp_path / "b" / "results.jsonl").items()}
    assert outputs_a == outputs_b and "injection" in outputs_a.values() and "benign" in outputs_a.values()
