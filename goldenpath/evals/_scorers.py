"""Scorers: per-item metric values from a sample and a model's output, and their registry.

A scorer is made by a factory registered with ``@scorer("name")`` (in the spirit of inspect_ai); the
factory takes the scorer's parameters (from Python, or later from a task's YAML) and returns the
scoring function. That function takes the sample and the output — the model's text, or for retrieval
the ranked document ids — and returns ``{metric: value}``, or a ``Scored`` when it has provenance to
keep with the item (the LLM judge's prompt, model, seed and verdicts); it may be ``async`` (then it
returns an awaitable). A scorer that needs the gateway receives it as a factory parameter:
``create_scorer("embedding_similarity", embed=client_embed)``; the runner connects a factory's
``chat`` parameter (the LLM judge's) to the task's gateway itself. A scorer may return no value for
a metric that does not apply to the item (e.g. recall of a query with no relevant document); the
item then takes no part in that metric.
"""

from __future__ import annotations

import inspect
import json
import math
import re
import string
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import jsonschema
import numpy as np

from goldenpath.evals._datasets import Sample
from goldenpath.evals._results import EvalInputError, RunResults

Scores = dict[str, float]
Output = str | Sequence[str]
"""A model's text, or a retrieval system's ranked document ids (best first)."""


@dataclass(frozen=True)
class Scored:
    """A scorer's metrics with the provenance to keep in the item's result (JSON-serializable)."""

    scores: Scores
    details: dict[str, Any]


Scorer = Callable[[Sample, Output], Scores | Scored | Awaitable[Scores | Scored]]
EmbedFn = Callable[[list[str]], Awaitable[Sequence[Sequence[float]]]]
"""Embeds texts (one vector per text, in order); e.g. a call to the gateway's ``/v1/embeddings``."""

_Factory = TypeVar("_Factory", bound=Callable[..., Scorer])
_REGISTRY: dict[str, Callable[..., Scorer]] = {}


class ScorerError(EvalInputError):
    """A scorer cannot be made (unknown name, bad parameters) or cannot score a sample (wrong expected)."""


def scorer(name: str) -> Callable[[_Factory], _Factory]:
    """Register a scorer factory under ``name``; the factory's keyword parameters are the scorer's."""
    if not name:
        raise ValueError("a scorer needs a non-empty name")

    def register(factory: _Factory) -> _Factory:
        if _REGISTRY.get(name, factory) is not factory:
            raise ValueError(f"a different scorer is already registered as {name!r}")
        _REGISTRY[name] = factory
        return factory

    return register


def registered_scorers() -> list[str]:
    return sorted(_REGISTRY)


def scorer_takes(name: str, parameter: str) -> bool:
    """Whether the scorer registered as ``name`` has the factory parameter ``parameter``."""
    factory = _REGISTRY.get(name)
    return factory is not None and parameter in inspect.signature(factory).parameters


def create_scorer(name: str, /, **params: Any) -> Scorer:
    """The scorer registered as ``name``, made with ``params``; errors name the scorer and the reason."""
    if name not in _REGISTRY:
        raise ScorerError(f"unknown scorer {name!r} (known: {', '.join(registered_scorers())})")
    factory = _REGISTRY[name]
    try:
        inspect.signature(factory).bind(**params)
    except TypeError as exc:
        raise ScorerError(f"scorer {name!r}: {exc}") from None
    try:
        return factory(**params)
    except (ValueError, re.error, jsonschema.SchemaError) as exc:
        raise ScorerError(f"scorer {name!r}: {exc}") from None


async def score_item(
    scorers: Mapping[str, Scorer], sample: Sample, output: Output
) -> tuple[Scores, dict[str, dict[str, Any]]]:
    """Every scorer's metrics for one output, merged, and the provenance of those that gave some (by
    scorer label); two scorers giving one metric is an error."""
    merged: Scores = {}
    details: dict[str, dict[str, Any]] = {}
    for name, score in scorers.items():
        result = score(sample, output)
        values = await result if inspect.isawaitable(result) else result
        if isinstance(values, Scored):
            details[name] = values.details
            values = values.scores
        for metric, value in values.items():
            if metric in merged:
                raise ScorerError(f"metric {metric!r} of scorer {name!r} is also given by another scorer")
            merged[metric] = value
    return merged, details


async def score_output(scorers: Mapping[str, Scorer], sample: Sample, output: Output) -> Scores:
    """Every scorer's metrics for one output, merged (``score_item`` without the provenance)."""
    return (await score_item(scorers, sample, output))[0]


# --- helpers -----------------------------------------------------------------------------------------


def _text(sample: Sample, output: Output) -> str:
    if not isinstance(output, str):
        raise ScorerError(f"sample {sample.id!r}: this scorer needs the model's text, got {type(output).__name__}")
    return output


def _references(sample: Sample) -> list[str]:
    """``expected`` as a list of reference texts (a string, or a list of strings)."""
    expected = sample.expected
    if isinstance(expected, str):
        return [expected]
    if isinstance(expected, list) and all(isinstance(item, str) for item in expected):
        return list(expected)
    raise ScorerError(f"sample {sample.id!r}: expected must be a text or a list of texts, got {expected!r}")


def _flag(condition: bool) -> float:
    return 1.0 if condition else 0.0


# --- SQuAD v2, as the official evaluation script computes it ------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalization: lower case, no punctuation, no articles (a, an, the), single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _squad_f1(gold: str, prediction: str) -> float:
    gold_tokens = normalize_answer(gold).split() if gold else []
    pred_tokens = normalize_answer(prediction).split() if prediction else []
    if not gold_tokens or not pred_tokens:
        return _flag(gold_tokens == pred_tokens)
    common = sum((Counter(gold_tokens) & Counter(pred_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_scores(gold_answers: Sequence[str], prediction: str) -> Scores:
    """EM and F1 (0 to 1) of one prediction, as SQuAD v2's official script: the best over the gold answers
    that normalize to something, or over ``[""]`` when none does (unanswerable: only an empty
    prediction scores 1)."""
    golds = [answer for answer in gold_answers if normalize_answer(answer)] or [""]
    return {
        "squad_em": max(_flag(normalize_answer(g) == normalize_answer(prediction)) for g in golds),
        "squad_f1": max(_squad_f1(g, prediction) for g in golds),
    }


# --- text scorers ------------------------------------------------------------------------------------


@scorer("exact_match")
def exact_match() -> Scorer:
    """``exact_match``: 1 when the output equals a reference, surrounding whitespace aside."""

    def score(sample: Sample, output: Output) -> Scores:
        text = _text(sample, output).strip()
        return {"exact_match": _flag(any(text == ref.strip() for ref in _references(sample)))}

    return score


@scorer("normalized_match")
def normalized_match() -> Scorer:
    """``normalized_match``: 1 when the output equals a reference after SQuAD normalization."""

    def score(sample: Sample, output: Output) -> Scores:
        text = normalize_answer(_text(sample, output))
        return {"normalized_match": _flag(any(text == normalize_answer(ref) for ref in _references(sample)))}

    return score


@scorer("contains")
def contains(ignore_case: bool = True) -> Scorer:
    """``contains``: 1 when a reference occurs in the output."""

    def score(sample: Sample, output: Output) -> Scores:
        text = _text(sample, output)
        refs = _references(sample)
        if ignore_case:
            text, refs = text.casefold(), [ref.casefold() for ref in refs]
        return {"contains": _flag(any(ref in text for ref in refs))}

    return score


@scorer("regex")
def regex(pattern: str | None = None, ignore_case: bool = False, full_match: bool = False) -> Scorer:
    """``regex``: 1 when the pattern (``pattern``, else the sample's expected text) matches the output;
    anywhere in it, or the whole stripped output with ``full_match``."""
    flags = re.IGNORECASE if ignore_case else 0
    fixed = re.compile(pattern, flags) if pattern is not None else None

    def score(sample: Sample, output: Output) -> Scores:
        text = _text(sample, output)
        if fixed is not None:
            compiled = fixed
        else:
            if not isinstance(sample.expected, str):
                raise ScorerError(f"sample {sample.id!r}: without a pattern, expected must be a regex text")
            try:
                compiled = re.compile(sample.expected, flags)
            except re.error as exc:
                raise ScorerError(f"sample {sample.id!r}: expected is not a valid regex: {exc}") from None
        matched = compiled.fullmatch(text.strip()) if full_match else compiled.search(text)
        return {"regex": _flag(matched is not None)}

    return score


_FENCE = re.compile(r"^```[a-zA-Z0-9_-]*\s*\n(.*?)\n?```$", re.DOTALL)


@scorer("json_schema")
def json_schema(schema: dict[str, Any] | None = None) -> Scorer:
    """``json_valid`` (the output parses as JSON) and ``schema_valid`` (it validates against ``schema``,
    else against the sample's expected schema). One surrounding Markdown code fence is removed first."""
    if schema is not None:
        jsonschema.validators.validator_for(schema).check_schema(schema)

    def score(sample: Sample, output: Output) -> Scores:
        wanted = schema if schema is not None else sample.expected
        if not isinstance(wanted, dict):
            raise ScorerError(f"sample {sample.id!r}: without a schema, expected must be a JSON schema object")
        text = _text(sample, output).strip()
        fenced = _FENCE.match(text)
        try:
            document = json.loads(fenced.group(1) if fenced else text)
        except ValueError:
            return {"json_valid": 0.0, "schema_valid": 0.0}
        validator_class = jsonschema.validators.validator_for(wanted)
        try:
            validator_class.check_schema(wanted)
        except jsonschema.SchemaError as exc:
            raise ScorerError(f"sample {sample.id!r}: invalid JSON schema: {exc.message}") from None
        return {"json_valid": 1.0, "schema_valid": _flag(validator_class(wanted).is_valid(document))}

    return score


_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+(?:[eE][-+]?\d+)?")


def _parse_number(text: str) -> float | None:
    """The output as a number: the whole text if it is one, else the last number in it (``1,234`` is 1234)."""
    try:
        value = float(text.strip())
    except ValueError:
        found = _NUMBER.findall(text)
        if not found:
            return None
        value = float(found[-1].replace(",", ""))
    return value if math.isfinite(value) else None


@scorer("numeric")
def numeric(abs_tol: float = 0.0, rel_tol: float = 1e-9) -> Scorer:
    """``numeric_match``: 1 when the output's number is within the tolerances of the expected number
    (``math.isclose``); 0 when the output has no number."""
    if abs_tol < 0 or rel_tol < 0:
        raise ValueError("tolerances must be non-negative")

    def score(sample: Sample, output: Output) -> Scores:
        expected = sample.expected
        if isinstance(expected, str):
            expected = _parse_number(expected)
        if isinstance(expected, bool) or not isinstance(expected, int | float) or not math.isfinite(expected):
            raise ScorerError(f"sample {sample.id!r}: expected must be a number, got {sample.expected!r}")
        value = _parse_number(_text(sample, output))
        close = value is not None and math.isclose(value, expected, rel_tol=rel_tol, abs_tol=abs_tol)
        return {"numeric_match": _flag(close)}

    return score


@scorer("squad")
def squad(no_answer: str | None = None) -> Scorer:
    """``squad_em`` and ``squad_f1`` (0 to 1) against the gold answer list, by SQuAD v2's official logic.

    An output that normalizes like ``no_answer`` (e.g. ``"unanswerable"``) counts as the empty answer.
    """
    abstain = normalize_answer(no_answer) if no_answer is not None else None

    def score(sample: Sample, output: Output) -> Scores:
        text = _text(sample, output)
        if abstain is not None and normalize_answer(text) == abstain:
            text = ""
        return squad_scores(_references(sample), text)

    return score


@scorer("rouge_l")
def rouge_l(use_stemmer: bool = False) -> Scorer:
    """``rouge_l``: the ROUGE-L F-measure of ``rouge-score``, the best over the references."""
    from rouge_score import rouge_scorer  # type: ignore[import-untyped]  # imports nltk: a second, so only when used

    rouge = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)

    def score(sample: Sample, output: Output) -> Scores:
        text = _text(sample, output)
        return {"rouge_l": max(float(rouge.score(ref, text)["rougeL"].fmeasure) for ref in _references(sample))}

    return score


@scorer("embedding_similarity")
def embedding_similarity(embed: EmbedFn) -> Scorer:
    """``embedding_similarity``: the cosine of the output's and a reference's embeddings, the best over
    the references. The texts are embedded with one ``embed`` call."""

    async def score(sample: Sample, output: Output) -> Scores:
        texts = [_text(sample, output), *_references(sample)]
        vectors = np.asarray(await embed(texts), dtype=np.float64)
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise ScorerError(f"sample {sample.id!r}: embed returned {vectors.shape} for {len(texts)} texts")
        norms = np.linalg.norm(vectors, axis=1)
        if not np.all(norms > 0):
            raise ScorerError(f"sample {sample.id!r}: embed returned a zero vector")
        cosines = vectors[1:] @ vectors[0] / (norms[1:] * norms[0])
        return {"embedding_similarity": float(np.max(cosines))}

    return score


# --- retrieval ---------------------------------------------------------------------------------------


def retrieval_scores(qrels: Mapping[str, int], ranking: Sequence[str], k: int) -> Scores:
    """``ndcg@k``, ``recall@k`` and ``mrr@k`` of one query, as trec_eval (and ir-measures) compute them.

    Relevant means a judgement above 0; nDCG's gain is the judgement (linear), its discount
    ``log2(rank + 1)``, its ideal the judgements sorted. A document repeated in the ranking counts
    at its first rank. A query with no relevant document has no values.
    """
    relevant = {doc: grade for doc, grade in qrels.items() if grade > 0}
    if not relevant:
        return {}
    top = list(dict.fromkeys(ranking))[:k]
    dcg = math.fsum(relevant.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(top))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = math.fsum(grade / math.log2(rank + 2) for rank, grade in enumerate(ideal))
    first = next((rank for rank, doc in enumerate(top) if doc in relevant), None)
    return {
        f"ndcg@{k}": dcg / idcg,
        f"recall@{k}": sum(1 for doc in top if doc in relevant) / len(relevant),
        f"mrr@{k}": 0.0 if first is None else 1.0 / (first + 1),
    }


_MEASURE = re.compile(r"^(ndcg|recall|mrr)(?:@([1-9][0-9]*))?$")


def _parse_measures(measures: Sequence[str]) -> list[tuple[str, str, int | None]]:
    """``(metric name, kind, cutoff)`` of each measure: ``ndcg@10``, ``recall@100``, ``mrr@10``, or ``mrr``
    (reciprocal rank over the whole ranking, ir-measures' ``RR``)."""
    if isinstance(measures, str) or not measures:
        raise ValueError("measures must be a non-empty list such as [ndcg@10, recall@100, mrr]")
    parsed = []
    for measure in measures:
        found = _MEASURE.match(str(measure).strip().lower())
        if found is None:
            raise ValueError(f"unknown retrieval measure {measure!r} (use ndcg@K, recall@K, mrr@K or mrr)")
        kind, cutoff = found.group(1), found.group(2)
        if kind != "mrr" and cutoff is None:
            raise ValueError(f"measure {measure!r} needs a cutoff, e.g. {kind}@10")
        parsed.append((found.group(0), kind, None if cutoff is None else int(cutoff)))
    return parsed


@scorer("retrieval")
def retrieval(k: int = 10, measures: Sequence[str] | None = None) -> Scorer:
    """``ndcg@k``, ``recall@k``, ``mrr@k`` of a ranking (the output: doc ids, best first) against the
    sample's expected ``{doc_id: relevance}``; with ``measures`` (e.g. ``[ndcg@10, recall@100, mrr]``)
    those instead, each at its own cutoff."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    wanted = None if measures is None else _parse_measures(measures)

    def score(sample: Sample, output: Output) -> Scores:
        if isinstance(output, str) or not all(isinstance(doc, str) for doc in output):
            raise ScorerError(f"sample {sample.id!r}: retrieval needs the ranked document ids (a list of strings)")
        expected = sample.expected
        if not isinstance(expected, dict) or not all(
            isinstance(grade, int) and not isinstance(grade, bool) for grade in expected.values()
        ):
            raise ScorerError(f"sample {sample.id!r}: expected must be {{doc_id: integer relevance}}")
        if wanted is None:
            return retrieval_scores(expected, output, k)
        scores: Scores = {}
        for name, kind, cutoff in wanted:
            at = cutoff if cutoff is not None else max(len(output), 1)
            values = retrieval_scores(expected, output, at)
            if values:
                scores[name] = values[f"{kind}@{at}"]
        return scores

    return score


# --- detection ---------------------------------------------------------------------------------------

_POSITIVE = ("1", "true", "yes", "positive", "injection", "jailbreak", "unsafe", "malicious")


@scorer("detection")
def detection(threshold: float = 0.5, positive_labels: Sequence[str] = _POSITIVE) -> Scorer:
    """``tp``, ``fp``, ``fn``, ``tn``: one of them 1 for the item (aggregate with ``detection_summary``).

    The output is a score (positive when ``>= threshold``) or a label (positive when it is one of
    ``positive_labels``, case and surrounding punctuation aside; any other text is negative). The
    sample's expected is 1 / ``True`` for a positive, 0 / ``False`` for a negative.
    """
    labels = frozenset(label.casefold() for label in positive_labels)

    def score(sample: Sample, output: Output) -> Scores:
        expected = sample.expected
        if expected not in (0, 1):
            raise ScorerError(f"sample {sample.id!r}: expected must be 1 (positive) or 0 (negative), got {expected!r}")
        text = _text(sample, output).strip()
        try:
            predicted = float(text) >= threshold
        except ValueError:
            predicted = text.strip(string.punctuation + " ").casefold() in labels
        actual = bool(expected)
        return {
            "tp": _flag(predicted and actual),
            "fp": _flag(predicted and not actual),
            "fn": _flag(not predicted and actual),
            "tn": _flag(not predicted and not actual),
        }

    return score


@dataclass(frozen=True)
class DetectionSummary:
    """Confusion counts over a run and the rates; a rate with a zero denominator is ``None``."""

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn) if self.tp + self.fp + self.fn else None

    @property
    def fpr(self) -> float | None:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else None


def detection_summary(run: RunResults | Iterable[Mapping[str, float]]) -> DetectionSummary:
    """Sum the ``detection`` scorer's per-item indicators over a run (every epoch of every item)."""
    keys = ("tp", "fp", "fn", "tn")
    counts = dict.fromkeys(keys, 0.0)
    if isinstance(run, RunResults):
        for key in keys:
            counts[key] = math.fsum(v for values in run.scores.get(key, {}).values() for v in values)
    else:
        for row in run:
            for key in keys:
                counts[key] += row.get(key, 0.0)
    return DetectionSummary(**{key: round(value) for key, value in counts.items()})
