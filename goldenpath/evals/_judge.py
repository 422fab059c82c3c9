"""The LLM judge: a rubric, any model alias through the gateway, and a validated JSON verdict.

The judge model gets a system message saying what to return and the rubric (a Jinja2 template over
the item's ``input`` fields, ``input``, ``output``, ``expected``, ``metadata`` and ``sample``) as the
user message. Its answer must hold ``{"reasoning": str, "score": ...}``, the score a number in the
declared ``scale`` or a label of the declared ``labels``; it is checked with jsonschema, and an invalid
answer is sent back with the validation error, at most ``max_retries`` times. The request asks for
the schema as ``response_format`` (``json_schema``) unless told not to; with ``auto`` a gateway that
refuses it (400) is asked again without it. ``repeats`` independent verdicts (seeds ``seed + r``) are
aggregated (mean, median, or majority); each is kept in the item's provenance with the prompt, the
model and the seeds. A judge that gives no valid verdict fails the item: it is never a silent zero.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2
import jsonschema
import openai
from jinja2.sandbox import SandboxedEnvironment

from goldenpath.evals._datasets import Sample
from goldenpath.evals._scorers import Output, Scored, Scorer, ScorerError, scorer
from goldenpath.evals._targets import ChatFn, TokenUsage

JUDGE_SYSTEM = (
    "You are an impartial judge. Evaluate the response described by the user against the rubric. "
    'Answer with one JSON object and nothing else: {"reasoning": "<a brief justification>", "score": <the score>}.'
)
AGGREGATES = ("mean", "median", "majority")
RESPONSE_FORMATS = ("auto", "json_schema", "none")

_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
_DECODER = json.JSONDecoder()


def extract_json(text: str) -> Any:
    """The JSON document in a reply: the whole text, else the last JSON object in it (so prose or a
    Markdown fence around it does not matter). ``ValueError`` when there is none."""
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    found: Any = None
    start = stripped.find("{")
    while start != -1:
        try:
            value, end = _DECODER.raw_decode(stripped, start)
        except ValueError:
            start = stripped.find("{", start + 1)
            continue
        found = value
        start = stripped.find("{", end)
    if found is None:
        raise ValueError("no JSON object in the reply")
    return found


def verdict_schema(scale: tuple[float, float] | None, labels: Sequence[str] | None) -> dict[str, Any]:
    score: dict[str, Any] = (
        {"type": "string", "enum": list(labels)}
        if labels is not None
        else {"type": "number", "minimum": scale[0], "maximum": scale[1]}
        if scale is not None
        else {"type": "number"}
    )
    return {
        "type": "object",
        "properties": {"reasoning": {"type": "string"}, "score": score},
        "required": ["reasoning", "score"],
        "additionalProperties": False,
    }


def _scale(value: Sequence[float] | None) -> tuple[float, float] | None:
    if value is None:
        return None
    if (
        isinstance(value, str)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value)
        or value[0] >= value[1]
    ):
        raise ValueError(f"scale must be [min, max] with min < max, got {value!r}")
    return float(value[0]), float(value[1])


def _labels(value: Mapping[str, float] | None) -> dict[str, float] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not value:
        raise ValueError(f"labels must map each label to its numeric value, e.g. {{pass: 1, fail: 0}}, got {value!r}")
    for label, number in value.items():
        if not isinstance(label, str) or not label:
            raise ValueError(f"labels: {label!r} is not a non-empty text")
        if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
            raise ValueError(f"labels: the value of {label!r} must be a number, got {number!r}")
    return {label: float(number) for label, number in value.items()}


def _aggregate(how: str, raw: list[Any], values: list[float]) -> float:
    if how == "mean":
        return math.fsum(values) / len(values)
    if how == "median":
        return float(statistics.median(values))
    counts = Counter(raw)
    top = max(counts.values())
    # a tie goes to the lowest value: a split jury does not pass an item
    return min(value for answer, value in zip(raw, values, strict=True) if counts[answer] == top)


@scorer("llm_judge")
def llm_judge(
    rubric: str,
    model: str,
    scale: Sequence[float] | None = None,
    labels: Mapping[str, float] | None = None,
    repeats: int = 1,
    aggregate: str | None = None,
    max_retries: int = 2,
    temperature: float = 0.0,
    seed: int | None = 0,
    max_tokens: int = 512,
    response_format: str = "auto",
    base_url: str | None = None,
    chat: ChatFn | None = None,
) -> Scorer:
    """``judge``: the aggregated verdict of ``model`` on the item by ``rubric`` (a score in ``scale``, or
    the value of a label of ``labels``). ``base_url`` sends the judge to another gateway over HTTP;
    ``chat`` is the gateway call (the runner connects it)."""
    template = _compile(rubric)
    if not isinstance(model, str) or not model:
        raise ValueError("model must name the judge's model alias")
    bounds, label_values = _scale(scale), _labels(labels)
    if (bounds is None) == (label_values is None):
        raise ValueError("give exactly one of scale: [min, max] and labels: {label: value}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or not 1 <= repeats <= 100:
        raise ValueError(f"repeats must be an integer from 1 to 100, got {repeats!r}")
    how = aggregate or ("majority" if label_values is not None else "mean")
    if how not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {how!r}")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or not 0 <= max_retries <= 10:
        raise ValueError(f"max_retries must be an integer from 0 to 10, got {max_retries!r}")
    if response_format not in RESPONSE_FORMATS:
        raise ValueError(f"response_format must be one of {', '.join(RESPONSE_FORMATS)}, got {response_format!r}")
    if not 0.0 <= temperature <= 2.0:
        raise ValueError(f"temperature must be between 0 and 2, got {temperature!r}")
    schema = verdict_schema(bounds, None if label_values is None else list(label_values))
    validator = jsonschema.Draft202012Validator(schema)
    if bounds is not None:
        instruction = f"The score is a number from {bounds[0]:g} to {bounds[1]:g}."
    else:
        assert label_values is not None
        instruction = "The score is one of these labels: " + ", ".join(json.dumps(k) for k in label_values) + "."
    system = f"{JUDGE_SYSTEM}\n{instruction}"
    state = {"response_format": response_format != "none"}

    def render(sample: Sample, output: Output) -> str:
        fields = sample.input if isinstance(sample.input, dict) else {}
        dumped = sample.model_dump(mode="json")
        context = {
            **fields,
            "input": dumped["input"],
            "output": output if isinstance(output, str) else list(output),
            "expected": sample.expected,
            "metadata": sample.metadata,
            "sample": {"id": sample.id, "input": dumped["input"], "metadata": sample.metadata},
        }
        try:
            return template.render(context)
        except jinja2.TemplateError as exc:
            raise ScorerError(f"sample {sample.id!r}: llm_judge rubric: {exc.message}") from None

    def check(reply: str) -> tuple[Any, str, str | None]:
        """(score, reasoning, None) for a valid verdict, else (None, "", the reason)."""
        try:
            document = extract_json(reply)
        except ValueError as exc:
            return None, "", str(exc)
        error = jsonschema.exceptions.best_match(validator.iter_errors(document))
        if error is not None:
            where = ".".join(str(p) for p in error.absolute_path)
            return None, "", f"{where}: {error.message}" if where else error.message
        return document["score"], document["reasoning"], None

    async def ask(messages: list[dict[str, Any]], params: dict[str, Any]) -> tuple[str, TokenUsage, bool]:
        assert chat is not None
        if state["response_format"]:
            fmt = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": schema}}
            try:
                reply = await chat(model, messages, {**params, "response_format": fmt})
                return reply.text, reply.tokens, True
            except openai.BadRequestError:
                if response_format != "auto":
                    raise
                state["response_format"] = False  # this gateway or model does not take it: ask plainly
        reply = await chat(model, messages, params)
        return reply.text, reply.tokens, False

    async def one_verdict(sample: Sample, prompt: list[dict[str, Any]], repeat_seed: int | None) -> dict[str, Any]:
        params: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens}
        if repeat_seed is not None:
            params["seed"] = repeat_seed
        messages = list(prompt)
        used = TokenUsage()
        problems: list[str] = []
        for attempt in range(1, max_retries + 2):
            reply, tokens, structured = await ask(messages, params)
            used += tokens
            score, reasoning, error_or_none = check(reply)
            if error_or_none is None:
                value = float(score) if label_values is None else label_values[score]
                return {
                    "seed": repeat_seed,
                    "score": score,
                    "value": value,
                    "reasoning": reasoning,
                    "attempts": attempt,
                    "response_format": structured,
                    "tokens": used.as_dict(),
                }
            error = error_or_none
            problems.append(f"attempt {attempt}: {error}")
            messages += [
                {"role": "assistant", "content": reply},
                {
                    "role": "user",
                    "content": f"That is not a valid verdict ({error}). Answer again with only the JSON object "
                    f'{{"reasoning": ..., "score": ...}}. {instruction}',
                },
            ]
        raise ScorerError(
            f"sample {sample.id!r}: llm_judge {model!r} gave no valid verdict in {max_retries + 1} attempts "
            f"({'; '.join(problems)})"
        )

    async def score(sample: Sample, output: Output) -> Scored:
        if chat is None:
            raise ScorerError("llm_judge has no gateway to call: run it in a task, or pass chat=")
        prompt = [{"role": "system", "content": system}, {"role": "user", "content": render(sample, output)}]
        verdicts = [await one_verdict(sample, prompt, None if seed is None else seed + r) for r in range(repeats)]
        value = _aggregate(how, [v["score"] for v in verdicts], [v["value"] for v in verdicts])
        total = TokenUsage()
        for verdict in verdicts:
            total += TokenUsage(verdict["tokens"]["prompt"], verdict["tokens"]["completion"])
        details = {
            "model": model,
            "base_url": base_url,
            "seed": seed,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "aggregate": how,
            "prompt": prompt,
            "repeats": verdicts,
            "tokens": total.as_dict(),
        }
        return Scored({"judge": value}, details)

    return score


def _compile(source: str) -> jinja2.Template:
    if not isinstance(source, str) or not source.strip():
        raise ValueError("rubric must be a non-empty template text")
    try:
        return _ENV.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"rubric: template syntax error on line {exc.lineno}: {exc.message}") from None
