"""The LLM judge against a real OpenAI-compatible server on loopback (tests/evals/fake_openai.py).

That server echoes the last message, so a judge whose rubric renders to a JSON text "returns" that
JSON, and it can script a model's replies: parsing, validation, retries with the error fed back,
response_format fallback and aggregation are exercised deterministically, through real HTTP.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import openai
import pytest

from goldenpath.evals import (
    ChatFn,
    ChatReply,
    Sample,
    Scored,
    ScorerError,
    TaskError,
    create_scorer,
    extract_json,
    load_task,
    run_task,
)
from goldenpath.evals._targets import chat_completion
from tests.evals.fake_openai import FakeUpstream

VERDICT = '{"reasoning": "%s", "score": %s}'


def chat_to(fake: FakeUpstream) -> ChatFn:
    client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="k", max_retries=0)

    async def chat(model: str, messages: list[dict[str, Any]], params: Any) -> ChatReply:
        return await chat_completion(client, model, messages, params)

    return chat


def judge_requests(fake: FakeUpstream, model: str = "judge") -> list[dict[str, Any]]:
    return [body for body in fake.requests if body["model"] == model]


def sample(expected: Any = "Paris") -> Sample:
    return Sample(id="s1", input={"question": "Capital of France?"}, expected=expected)


async def score(made: Any, output: str = "Paris") -> Scored:
    result = await made(sample(), output)
    assert isinstance(result, Scored)
    return result


def write_judge_task(tmp_path: Path, verdicts: list[str], params: str) -> Path:
    """Items whose input is a verdict text: the echo target returns it, and the rubric ``{{ output }}``
    makes the echo judge return it too."""
    rows = [{"id": f"v{i}", "input": text, "expected": "-"} for i, text in enumerate(verdicts)]
    (tmp_path / "verdicts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / "judge.yaml"
    path.write_text(
        "name: judged\ndataset: verdicts.jsonl\ntarget: {model: echo}\nscorers:\n"
        "  - name: llm_judge\n    params:\n      model: judge\n      rubric: '{{ output }}'\n" + params
    )
    return path


def test_extract_json_takes_the_last_object() -> None:
    assert extract_json(' {"a": 1} ') == {"a": 1}
    assert extract_json('Sure. ```json\n{"score": 3, "reasoning": "x"}\n```') == {"score": 3, "reasoning": "x"}
    assert extract_json('First {"score": 1} then {"score": 2, "n": {"x": 1}} done') == {"score": 2, "n": {"x": 1}}
    with pytest.raises(ValueError, match="no JSON object"):
        extract_json("no verdict { here")


async def test_a_run_records_the_verdict_and_its_provenance(upstream: FakeUpstream, tmp_path: Path) -> None:
    verdicts = [VERDICT % ("right", 9), VERDICT % ("wrong", 2), "Reasoned at length. " + VERDICT % ("ok", 5.5)]
    task = load_task(write_judge_task(tmp_path, verdicts, "      scale: [0, 10]\n      seed: 41\n"))
    summary = await run_task(task, run_dir=tmp_path / "run", progress=False)

    assert (summary.scored, summary.errors) == (3, 0)
    lines = {
        line["item_id"]: line for line in map(json.loads, (tmp_path / "run/results.jsonl").read_text().splitlines())
    }
    assert {i: line["scores"]["judge"] for i, line in lines.items()} == {"v0": 9.0, "v1": 2.0, "v2": 5.5}
    details = lines["v1"]["details"]["llm_judge"]
    assert (details["model"], details["seed"], details["aggregate"]) == ("judge", 41, "mean")
    assert details["prompt"][0]["role"] == "system" and "from 0 to 10" in details["prompt"][0]["content"]
    assert details["prompt"][1] == {"role": "user", "content": verdicts[1]}
    [repeat] = details["repeats"]
    assert repeat | {"tokens": None} == {
        "seed": 41,
        "score": 2,
        "value": 2.0,
        "reasoning": "wrong",
        "attempts": 1,
        "response_format": True,
        "tokens": None,
    }
    [sent] = [b for b in judge_requests(upstream) if b["messages"][-1]["content"] == verdicts[1]]
    assert sent["seed"] == 41 and sent["temperature"] == 0.0
    schema = sent["response_format"]["json_schema"]["schema"]
    assert sent["response_format"]["type"] == "json_schema"
    assert schema["properties"]["score"] == {"type": "number", "minimum": 0.0, "maximum": 10.0}
    # the judge's tokens count in the run's
    run = json.loads((tmp_path / "run/run.json").read_text())
    assert run["tokens"]["total"] == sum(line["tokens"]["total"] for line in lines.values()) + sum(
        line["details"]["llm_judge"]["tokens"]["total"] for line in lines.values()
    )


async def test_invalid_verdicts_are_retried_with_the_error_then_fail_the_item(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    verdicts = [VERDICT % ("fine", 3), VERDICT % ("too high", 11), "no json at all"]
    task = load_task(write_judge_task(tmp_path, verdicts, "      scale: [1, 5]\n      max_retries: 1\n"))
    summary = await run_task(task, run_dir=tmp_path / "run", progress=False)

    assert (summary.scored, summary.errors) == (1, 2), "errors are item errors, never silent zeros"
    errors = {e["item_id"]: e["error"] for e in json.loads((tmp_path / "run/run.json").read_text())["errors"]}
    assert (
        "gave no valid verdict in 2 attempts" in errors["v1"] and "11 is greater than the maximum of 5" in errors["v1"]
    )
    assert "no JSON object in the reply" in errors["v2"]
    retry = [
        b for b in judge_requests(upstream) if len(b["messages"]) == 4 and b["messages"][1]["content"] == verdicts[1]
    ]
    assert len(retry) == 1, "one retry, with the invalid reply and the validation error"
    assert retry[0]["messages"][2] == {"role": "assistant", "content": verdicts[1]}
    assert "11 is greater than the maximum of 5" in retry[0]["messages"][3]["content"]
    assert len(judge_requests(upstream)) == 1 + 2 + 2

    target_calls = len(judge_requests(upstream, "echo"))
    again = await run_task(task, run_dir=tmp_path / "run", progress=False)
    assert again.errors == 2 and len(judge_requests(upstream, "echo")) == target_calls, (
        "a rerun judges the cached outputs again without asking the target"
    )


async def test_a_scripted_judge_recovers_on_retry(upstream: FakeUpstream) -> None:
    upstream.replies["judge"] = ["I think it is fine.", '{"score": 4}', VERDICT % ("matches", 4)]
    made = create_scorer(
        "llm_judge", model="judge", rubric="Q {{ question }} A {{ output }}", scale=[1, 5], chat=chat_to(upstream)
    )
    result = await score(made)
    assert result.scores == {"judge": 4.0}
    [repeat] = result.details["repeats"]
    assert repeat["attempts"] == 3 and repeat["reasoning"] == "matches"
    feedback = judge_requests(upstream)[2]["messages"][-1]["content"]
    assert "'reasoning' is a required property" in feedback


@pytest.mark.parametrize(
    ("params", "replies", "expected", "values"),
    [
        ({"scale": [1, 5], "repeats": 3}, [2, 4, 5], 11 / 3, [2.0, 4.0, 5.0]),
        ({"scale": [1, 5], "repeats": 3, "aggregate": "median"}, [2, 5, 3], 3.0, [2.0, 5.0, 3.0]),
        ({"labels": {"good": 1, "bad": 0}, "repeats": 3}, ['"good"', '"bad"', '"good"'], 1.0, [1.0, 0.0, 1.0]),
        ({"labels": {"good": 1, "bad": 0}, "repeats": 2}, ['"good"', '"bad"'], 0.0, [1.0, 0.0]),
        (
            {"labels": {"a": 1, "b": 0.5, "c": 0}, "repeats": 3, "aggregate": "mean"},
            ['"a"', '"b"', '"b"'],
            2 / 3,
            [1, 0.5, 0.5],
        ),
    ],
)
async def test_repeats_are_aggregated_and_kept(
    upstream: FakeUpstream, params: dict[str, Any], replies: list[Any], expected: float, values: list[float]
) -> None:
    upstream.replies["judge"] = [VERDICT % (f"r{i}", reply) for i, reply in enumerate(replies)]
    made = create_scorer("llm_judge", model="judge", rubric="{{ output }}", seed=5, chat=chat_to(upstream), **params)
    result = await score(made)
    assert result.scores["judge"] == pytest.approx(expected)
    assert [r["value"] for r in result.details["repeats"]] == values
    assert [r["seed"] for r in result.details["repeats"]] == [5 + i for i in range(len(replies))]
    assert [b["seed"] for b in judge_requests(upstream)] == [5 + i for i in range(len(replies))]


async def test_response_format_falls_back_when_refused(upstream: FakeUpstream) -> None:
    upstream.reject_response_format = True
    upstream.replies["judge"] = [VERDICT % ("ok", 1), VERDICT % ("ok", 0)]
    auto = create_scorer(
        "llm_judge", model="judge", rubric="{{ output }}", scale=[0, 1], chat=chat_to(upstream), repeats=2
    )
    result = await score(auto)
    assert result.scores == {"judge": 0.5}
    assert [r["response_format"] for r in result.details["repeats"]] == [False, False]
    assert ["response_format" in b for b in judge_requests(upstream)] == [True, False, False], "asked once with it"

    forced = create_scorer(
        "llm_judge",
        model="judge",
        rubric="{{ output }}",
        scale=[0, 1],
        chat=chat_to(upstream),
        response_format="json_schema",
    )
    with pytest.raises(openai.BadRequestError):
        await cast(Any, forced)(sample(), "x")
    plain = create_scorer(
        "llm_judge", model="judge", rubric="{{ output }}", scale=[0, 1], chat=chat_to(upstream), response_format="none"
    )
    upstream.replies["judge"] = [VERDICT % ("ok", 1)]
    assert (await score(plain)).scores == {"judge": 1.0}


async def test_the_rubric_sees_input_output_and_expected(upstream: FakeUpstream) -> None:
    upstream.replies["judge"] = [VERDICT % ("ok", 1)]
    rubric = "{{ input.question }}|{{ question }}|{{ output }}|{{ expected }}|{{ sample.id }}"
    made = create_scorer("llm_judge", model="judge", rubric=rubric, scale=[0, 1], chat=chat_to(upstream))
    await score(made, "Lyon")
    assert (
        judge_requests(upstream)[0]["messages"][1]["content"] == "Capital of France?|Capital of France?|Lyon|Paris|s1"
    )
    broken = create_scorer("llm_judge", model="judge", rubric="{{ nope }}", scale=[0, 1], chat=chat_to(upstream))
    with pytest.raises(ScorerError, match="sample 's1': llm_judge rubric: 'nope' is undefined"):
        await cast(Any, broken)(sample(), "x")
    unconnected = create_scorer("llm_judge", model="judge", rubric="x", scale=[0, 1])
    with pytest.raises(ScorerError, match="no gateway to call"):
        await cast(Any, unconnected)(sample(), "x")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("scale: [0, 1]\n      labels: {a: 1}", "give exactly one of scale"),
        ("model: judge", "give exactly one of scale"),
        ("scale: [5, 1]", "scale must be [min, max] with min < max"),
        ("labels: [good, bad]", "labels must map each label to its numeric value"),
        ("labels: {good: yes}", "the value of 'good' must be a number"),
        ("scale: [0, 1]\n      aggregate: mode", "aggregate must be one of mean, median, majority"),
        ("scale: [0, 1]\n      repeats: 0", "repeats must be an integer from 1 to 100"),
        ("scale: [0, 1]\n      response_format: xml", "response_format must be one of auto, json_schema, none"),
        ("scale: [0, 1]\n      rubric: '{{ output'", "rubric: template syntax error"),
        ("scale: [0, 1]\n      judge: x", "got an unexpected keyword argument 'judge'"),
    ],
)
def test_bad_judge_parameters_name_the_field(tmp_path: Path, params: str, message: str) -> None:
    path = tmp_path / "t.yaml"
    rubric = "" if "rubric:" in params else "      rubric: '{{ output }}'\n"
    model = "" if params.startswith("model:") else "      model: judge\n"
    path.write_text(
        "name: t\ndataset: squad_v2\ntarget: {model: m, base_url: 'http://127.0.0.1:1/v1'}\nscorers:\n"
        f"  - name: llm_judge\n    params:\n{model}{rubric}      {params}\n"
    )
    with pytest.raises(TaskError) as caught:
        load_task(path)
    assert str(caught.value).startswith(f"{path}: invalid task: scorers.0: scorer 'llm_judge'") and message in str(
        caught.value
    )


def test_the_judge_example_loads() -> None:
    example = load_task(Path(__file__).parents[2] / "examples" / "evals" / "judge-qa.yaml")
    assert example.gateway_aliases() == {"smollm2-135m-instruct"}
    assert list(example.build_scorers()) == ["squad", "llm_judge"]
