"""Scorers: the registry, each scorer, and equality with the reference implementations on the shared data."""

from __future__ import annotations

import collections
import random
import re
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ir_measures
import pytest
from ir_measures import RR, R, nDCG
from rouge_score import rouge_scorer  # type: ignore[import-untyped]

from goldenpath.evals import (
    Dataset,
    DatasetError,
    DetectionSummary,
    Sample,
    Scorer,
    ScorerError,
    Scores,
    _scorers,
    create_scorer,
    detection_summary,
    load_jackhhao_jailbreaks,
    load_results,
    load_scifact,
    load_squad_v2,
    registered_scorers,
    retrieval_scores,
    score_output,
    scorer,
    shared_data_root,
)
from tests.evals.conftest import write_results


def _call(score: Scorer, sample: Sample, output: str | list[str]) -> Scores:
    result = score(sample, output)
    assert isinstance(result, dict)
    return result


def _score(name: str, sample: Sample, output: str | list[str], **params: Any) -> Scores:
    return _call(create_scorer(name, **params), sample, output)


@pytest.fixture(scope="module")
def shared() -> Path:
    try:
        return shared_data_root()
    except DatasetError as exc:
        pytest.skip(str(exc))


# --- registry ----------------------------------------------------------------------------------------


def test_builtin_scorers_are_registered() -> None:
    assert set(registered_scorers()) >= {
        "exact_match",
        "normalized_match",
        "contains",
        "regex",
        "json_schema",
        "numeric",
        "squad",
        "rouge_l",
        "retrieval",
        "detection",
        "embedding_similarity",
    }


def test_create_scorer_errors_name_the_scorer() -> None:
    with pytest.raises(ScorerError, match=r"unknown scorer 'bleu' \(known: contains, "):
        create_scorer("bleu")
    with pytest.raises(ScorerError, match="scorer 'retrieval': got an unexpected keyword argument 'depth'"):
        create_scorer("retrieval", depth=3)
    with pytest.raises(ScorerError, match="scorer 'retrieval': k must be a positive integer"):
        create_scorer("retrieval", k=0)
    with pytest.raises(ScorerError, match="scorer 'regex': "):
        create_scorer("regex", pattern="(unclosed")
    with pytest.raises(ScorerError, match="scorer 'json_schema': "):
        create_scorer("json_schema", schema={"type": "no-such-type"})
    with pytest.raises(ScorerError, match="scorer 'numeric': tolerances must be non-negative"):
        create_scorer("numeric", abs_tol=-1)
    with pytest.raises(ScorerError, match="scorer 'embedding_similarity': missing a required argument: 'embed'"):
        create_scorer("embedding_similarity")


def test_decorator_registers_a_custom_scorer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_scorers, "_REGISTRY", dict(_scorers._REGISTRY))

    @scorer("length")
    def length(unit: int = 1) -> Scorer:
        def score(sample: Sample, output: str | Sequence[str]) -> Scores:
            return {"length": len(output) / unit}

        return score

    assert "length" in registered_scorers()
    assert _score("length", Sample(id="1", input="x"), "abcd", unit=2) == {"length": 2.0}
    assert scorer("length")(length) is length  # registering the same factory again is harmless
    with pytest.raises(ValueError, match="a different scorer is already registered as 'length'"):
        scorer("length")(lambda: length())


async def test_score_output_merges_sync_and_async_scorers() -> None:
    async def embed(texts: list[str]) -> list[list[float]]:
        return [[1.0, 0.0] if t == "yes" else [1.0, 1.0] for t in texts]

    sample = Sample(id="1", input="x", expected=["yes"])
    scorers = {"exact": create_scorer("exact_match"), "embed": create_scorer("embedding_similarity", embed=embed)}
    assert await score_output(scorers, sample, "yes") == {"exact_match": 1.0, "embedding_similarity": 1.0}
    assert await score_output(scorers, sample, "no") == pytest.approx(
        {"exact_match": 0.0, "embedding_similarity": 2**-0.5}
    )
    with pytest.raises(ScorerError, match="metric 'exact_match' of scorer 'again' is also given by another scorer"):
        await score_output({"exact": scorers["exact"], "again": create_scorer("exact_match")}, sample, "yes")


async def test_embedding_similarity_checks_the_vectors() -> None:
    async def wrong(texts: list[str]) -> list[list[float]]:
        return [[1.0]]

    async def zero(texts: list[str]) -> list[list[float]]:
        return [[0.0, 0.0] for _ in texts]

    sample = Sample(id="s", input="x", expected="y")
    with pytest.raises(ScorerError, match="sample 's': embed returned"):
        await score_output({"e": create_scorer("embedding_similarity", embed=wrong)}, sample, "x")
    with pytest.raises(ScorerError, match="sample 's': embed returned a zero vector"):
        await score_output({"e": create_scorer("embedding_similarity", embed=zero)}, sample, "x")


# --- text scorers ------------------------------------------------------------------------------------


def test_text_scorers() -> None:
    sample = Sample(id="1", input="q", expected=["The Eiffel Tower", "Tour Eiffel"])
    assert _score("exact_match", sample, " Tour Eiffel\n") == {"exact_match": 1.0}
    assert _score("exact_match", sample, "the eiffel tower") == {"exact_match": 0.0}
    assert _score("normalized_match", sample, "the Eiffel tower!") == {"normalized_match": 1.0}
    assert _score("normalized_match", sample, "Eiffel") == {"normalized_match": 0.0}
    assert _score("contains", sample, "It is the eiffel tower.") == {"contains": 1.0}
    assert _score("contains", sample, "It is the eiffel tower.", ignore_case=False) == {"contains": 0.0}
    with pytest.raises(ScorerError, match="sample '2': expected must be a text or a list of texts"):
        _score("exact_match", Sample(id="2", input="q", expected=3), "3")
    with pytest.raises(ScorerError, match="sample '1': this scorer needs the model's text, got list"):
        _score("contains", sample, ["doc"])


def test_regex() -> None:
    answer = Sample(id="1", input="q", expected=r"\d{4}-\d{2}")
    assert _score("regex", answer, "in 2024-05, yes") == {"regex": 1.0}
    assert _score("regex", answer, "in 2024-05, yes", full_match=True) == {"regex": 0.0}
    assert _score("regex", answer, " 2024-05\n", full_match=True) == {"regex": 1.0}
    assert _score("regex", answer, "ANSWER: B", pattern=r"answer:\s*b", ignore_case=True) == {"regex": 1.0}
    with pytest.raises(ScorerError, match="sample '2': expected is not a valid regex"):
        _score("regex", Sample(id="2", input="q", expected="(x"), "x")


def test_json_schema() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    sample = Sample(id="1", input="q", expected=schema)
    assert _score("json_schema", sample, '{"n": 3}') == {"json_valid": 1.0, "schema_valid": 1.0}
    assert _score("json_schema", sample, '```json\n{"n": 3}\n```') == {"json_valid": 1.0, "schema_valid": 1.0}
    assert _score("json_schema", sample, '{"n": "3"}') == {"json_valid": 1.0, "schema_valid": 0.0}
    assert _score("json_schema", sample, "{n: 3}") == {"json_valid": 0.0, "schema_valid": 0.0}
    plain = Sample(id="2", input="q")
    assert _score("json_schema", plain, "[1]", schema={"type": "array"}) == {"json_valid": 1.0, "schema_valid": 1.0}
    with pytest.raises(ScorerError, match="sample '2': without a schema, expected must be a JSON schema object"):
        _score("json_schema", plain, "[1]")
    with pytest.raises(ScorerError, match="sample '3': invalid JSON schema"):
        _score("json_schema", Sample(id="3", input="q", expected={"type": 5}), "[1]")


@pytest.mark.parametrize(
    ("output", "expected", "params", "match"),
    [
        ("42", 42, {}, 1.0),
        ("The answer is 1,234.", "1234", {}, 1.0),
        ("first 3 then 7", 7, {}, 1.0),
        ("3.14", 3.14159, {}, 0.0),
        ("3.14", 3.14159, {"abs_tol": 0.01}, 1.0),
        ("-2.5e3", -2500, {}, 1.0),
        ("about 101", 100, {"rel_tol": 0.02}, 1.0),
        ("no idea", 1, {}, 0.0),
    ],
)
def test_numeric(output: str, expected: object, params: dict[str, float], match: float) -> None:
    assert _score("numeric", Sample(id="1", input="q", expected=expected), output, **params) == {"numeric_match": match}


def test_numeric_needs_a_number_expected() -> None:
    with pytest.raises(ScorerError, match="sample '1': expected must be a number"):
        _score("numeric", Sample(id="1", input="q", expected="many"), "3")


# --- SQuAD v2: the official evaluation script's logic ------------------------------------------------
# normalize_answer, get_tokens, compute_exact and compute_f1 as in SQuAD v2's evaluate-v2.0.py; the
# per-question score is the max over the gold answers that normalize to something, else over [""].


def _official_normalize_answer(s: str) -> str:
    def remove_articles(text: str) -> str:
        regex = re.compile(r"\b(a|an|the)\b", re.UNICODE)
        return re.sub(regex, " ", text)

    def white_space_fix(text: str) -> str:
        return " ".join(text.split())

    def remove_punc(text: str) -> str:
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def _official_get_tokens(s: str) -> list[str]:
    if not s:
        return []
    return _official_normalize_answer(s).split()


def _official_compute_exact(a_gold: str, a_pred: str) -> int:
    return int(_official_normalize_answer(a_gold) == _official_normalize_answer(a_pred))


def _official_compute_f1(a_gold: str, a_pred: str) -> float:
    gold_toks = _official_get_tokens(a_gold)
    pred_toks = _official_get_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def _official_scores(expected: list[str], prediction: str) -> tuple[float, float]:
    gold_answers = [a for a in expected if _official_normalize_answer(a)] or [""]
    return (
        max(_official_compute_exact(a, prediction) for a in gold_answers),
        max(_official_compute_f1(a, prediction) for a in gold_answers),
    )


def _perturb(index: int, sample: Sample) -> str:
    golds: list[str] = sample.expected
    if not golds:
        return "" if index % 2 else "Normandy"  # half the unanswerable questions get an answer
    gold = golds[index % len(golds)]
    words = gold.split()
    match index % 5:
        case 0:
            return gold
        case 1:
            return " ".join(words[:-1])  # drop the last word (empty for one-word answers)
        case 2:
            return f"the {gold.upper()}!"
        case 3:
            return f"{gold} and some more words"
        case _:
            return "Paris"


@pytest.fixture(scope="module")
def squad_data(shared: Path) -> Dataset:
    return load_squad_v2(shared)


def test_squad_gold_predictions_score_one(squad_data: Dataset) -> None:
    score = create_scorer("squad")
    rows = [_call(score, s, s.expected[0] if s.expected else "") for s in squad_data.samples]
    assert all(row == {"squad_em": 1.0, "squad_f1": 1.0} for row in rows)


def test_squad_equals_the_official_logic_on_a_perturbation(squad_data: Dataset) -> None:
    score = create_scorer("squad")
    em, f1 = [], []
    for index, sample in enumerate(squad_data.samples):
        prediction = _perturb(index, sample)
        row = score(sample, prediction)
        assert isinstance(row, dict)
        reference = _official_scores(sample.expected, prediction)
        assert (row["squad_em"], row["squad_f1"]) == pytest.approx(reference, abs=1e-12), sample.id
        em.append(row["squad_em"])
        f1.append(row["squad_f1"])
    assert 0.3 < sum(em) / len(em) < sum(f1) / len(f1) < 0.9


@pytest.mark.parametrize(
    ("golds", "prediction", "em", "f1"),
    [
        (["Denver Broncos"], "the Denver Broncos.", 1.0, 1.0),
        (["Denver Broncos"], "Broncos", 0.0, 2 / 3),  # p = 1, r = 1/2
        (["in the 10th century", "10th century"], "10th and 11th centuries", 0.0, 2 * 0.25 * 0.5 / 0.75),
        ([], "", 1.0, 1.0),  # unanswerable, abstained
        ([], "France", 0.0, 0.0),
        (["a", "the"], "", 1.0, 1.0),  # golds that normalize to nothing count as unanswerable
        (["France"], "", 0.0, 0.0),
    ],
)
def test_squad_hand_computed(golds: list[str], prediction: str, em: float, f1: float) -> None:
    assert _score("squad", Sample(id="1", input="q", expected=golds), prediction) == pytest.approx(
        {"squad_em": em, "squad_f1": f1}
    )


def test_squad_no_answer_phrase() -> None:
    unanswerable = Sample(id="1", input="q", expected=[])
    assert _score("squad", unanswerable, "Unanswerable.", no_answer="unanswerable")["squad_em"] == 1.0
    assert _score("squad", unanswerable, "Unanswerable.")["squad_em"] == 0.0


# --- ROUGE-L -----------------------------------------------------------------------------------------


def test_rouge_l_hand_computed() -> None:
    sample = Sample(id="1", input="q", expected=["the cat sat on the mat", "a dog"])
    # LCS "the cat on the mat": precision 5/5, recall 5/6
    assert _score("rouge_l", sample, "the cat on the mat") == pytest.approx({"rouge_l": 10 / 11})
    assert _score("rouge_l", sample, "unrelated words") == {"rouge_l": 0.0}


@pytest.mark.parametrize("use_stemmer", [False, True])
def test_rouge_l_equals_rouge_score_on_squad(squad_data: Dataset, use_stemmer: bool) -> None:
    reference = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)
    score = create_scorer("rouge_l", use_stemmer=use_stemmer)
    answerable = [s for s in squad_data.samples if s.expected][:300]
    for index, sample in enumerate(answerable):
        prediction = _perturb(index, sample) or "nothing"
        row = score(sample, prediction)
        assert isinstance(row, dict)
        best = max(reference.score(gold, prediction)["rougeL"].fmeasure for gold in sample.expected)
        assert row == {"rouge_l": pytest.approx(best, abs=1e-12)}


# --- retrieval ---------------------------------------------------------------------------------------


def _synthetic_run(dataset: Dataset, corpus_ids: list[str], seed: int) -> dict[str, list[str]]:
    """Per query: its relevant docs and 30 random others, shuffled; a third of the queries lose their
    relevant docs below rank 20, a tenth retrieve none of them."""
    rng = random.Random(seed)
    run = {}
    for index, sample in enumerate(dataset.samples):
        relevant = list(sample.expected)
        others = [d for d in rng.sample(corpus_ids, 40) if d not in sample.expected][:30]
        if index % 10 == 0:
            ranking = others
        elif index % 3 == 0:
            ranking = others[:20] + relevant
        else:
            ranking = relevant + others
            rng.shuffle(ranking)
        run[sample.id] = ranking
    return run


def _ir_measures(qrels: dict[str, dict[str, int]], run: dict[str, list[str]], k: int) -> dict[str, Scores]:
    scored = {
        qid: {doc: float(len(ranking) - rank) for rank, doc in enumerate(ranking)} for qid, ranking in run.items()
    }
    names = {nDCG @ k: f"ndcg@{k}", R @ k: f"recall@{k}", RR @ k: f"mrr@{k}"}
    table: dict[str, Scores] = collections.defaultdict(dict)
    for metric in ir_measures.iter_calc(list(names), qrels, scored):
        table[metric.query_id][names[metric.measure]] = metric.value
    return table


@pytest.mark.parametrize("k", [1, 5, 10, 100])
def test_retrieval_equals_ir_measures_on_scifact(shared: Path, k: int) -> None:
    scifact = load_scifact(shared)
    corpus_ids = sorted({doc for s in scifact.samples for doc in s.expected} | {str(i) for i in range(1000, 1400)})
    run = _synthetic_run(scifact, corpus_ids, seed=k)
    qrels = {s.id: dict(s.expected) for s in scifact.samples}
    reference = _ir_measures(qrels, run, k)
    score = create_scorer("retrieval", k=k)
    ours = {s.id: _call(score, s, run[s.id]) for s in scifact.samples}
    assert ours.keys() == reference.keys()
    for qid, values in ours.items():
        assert values == pytest.approx(reference[qid], abs=1e-9), qid
    means = {m: sum(v[m] for v in ours.values()) / len(ours) for m in (f"ndcg@{k}", f"recall@{k}", f"mrr@{k}")}
    assert all(0.0 < mean < 1.0 for mean in means.values())


def test_retrieval_graded_relevance_equals_ir_measures() -> None:
    qrels = {
        "q1": {"a": 2, "b": 1, "c": 0, "d": 3},
        "q2": {"a": 1, "z": 2},
        "q3": {"x": 1},
    }
    run = {"q1": ["c", "b", "x", "a", "y", "d"], "q2": ["z", "a"], "q3": ["y", "w", "v"]}
    for k in (1, 3, 10):
        reference = _ir_measures(qrels, run, k)
        for qid, ranking in run.items():
            assert retrieval_scores(qrels[qid], ranking, k) == pytest.approx(reference[qid], abs=1e-12)


def test_retrieval_edge_cases() -> None:
    assert retrieval_scores({"a": 0}, ["a"], 10) == {}  # no relevant document: no values
    assert retrieval_scores({"a": 1}, ["b", "b", "a"], 2) == {
        "ndcg@2": pytest.approx(1 / 1.5849625007211562),
        "recall@2": 1.0,
        "mrr@2": 0.5,
    }
    sample = Sample(id="q", input="claim", expected={"a": 1})
    with pytest.raises(ScorerError, match="sample 'q': retrieval needs the ranked document ids"):
        _score("retrieval", sample, "a b")
    with pytest.raises(ScorerError, match="sample 'q': expected must be"):
        _score("retrieval", Sample(id="q", input="claim", expected={"a": "1"}), ["a"])


# --- detection ---------------------------------------------------------------------------------------


def test_detection_outcomes() -> None:
    positive, negative = Sample(id="p", input="x", expected=1), Sample(id="n", input="x", expected=False)
    assert _score("detection", positive, "0.9") == {"tp": 1.0, "fp": 0.0, "fn": 0.0, "tn": 0.0}
    assert _score("detection", positive, "0.9", threshold=0.95) == {"tp": 0.0, "fp": 0.0, "fn": 1.0, "tn": 0.0}
    assert _score("detection", negative, "Injection.") == {"tp": 0.0, "fp": 1.0, "fn": 0.0, "tn": 0.0}
    assert _score("detection", negative, "benign") == {"tp": 0.0, "fp": 0.0, "fn": 0.0, "tn": 1.0}
    assert _score("detection", positive, "flagged", positive_labels=["flagged"])["tp"] == 1.0
    with pytest.raises(ScorerError, match=r"sample 'x': expected must be 1 .* or 0"):
        _score("detection", Sample(id="x", input="x", expected="yes"), "1")


def test_detection_summary_over_a_run(shared: Path, tmp_path: Path) -> None:
    jackhhao = load_jackhhao_jailbreaks(shared)
    score = create_scorer("detection")
    rng = random.Random(0)
    predictions = {s.id: (s.expected if rng.random() < 0.8 else 1 - s.expected) for s in jackhhao.samples}
    rows = []
    for sample in jackhhao.samples:
        row = score(sample, "jailbreak" if predictions[sample.id] else "benign")
        assert isinstance(row, dict) and sum(row.values()) == 1.0
        rows.append(row)
    pairs = [(s.expected, predictions[s.id]) for s in jackhhao.samples]
    tp = sum(1 for actual, predicted in pairs if actual and predicted)
    fp = sum(1 for actual, predicted in pairs if not actual and predicted)
    fn = sum(1 for actual, predicted in pairs if actual and not predicted)
    tn = len(pairs) - tp - fp - fn
    summary = detection_summary(rows)
    assert summary == DetectionSummary(tp=tp, fp=fp, fn=fn, tn=tn)
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    assert summary.precision == pytest.approx(precision)
    assert summary.recall == pytest.approx(recall)
    assert summary.f1 == pytest.approx(2 * precision * recall / (precision + recall))
    assert summary.fpr == pytest.approx(fp / (fp + tn))
    path = write_results(tmp_path / "run.jsonl", [(s.id, row) for s, row in zip(jackhhao.samples, rows, strict=True)])
    assert detection_summary(load_results(path)) == summary


def test_detection_summary_undefined_rates() -> None:
    summary = detection_summary([{"tn": 1.0}, {"tn": 1.0}])
    assert summary == DetectionSummary(tp=0, fp=0, fn=0, tn=2)
    assert (summary.precision, summary.recall, summary.f1, summary.fpr) == (None, None, None, 0.0)
