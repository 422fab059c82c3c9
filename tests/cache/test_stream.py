"""Stored answers replayed as SSE payloads, and streams assembled back into answers."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from goldenpath.cache import StreamAssembler, completion_to_events

USAGE = {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}
HEAD = {"id": "chatcmpl-abc", "created": 1_700_000_000, "model": "m", "system_fingerprint": "fp_1"}


def chat_completion(*messages: dict[str, Any], finish_reason: str = "stop") -> dict[str, Any]:
    choices = [
        {"index": i, "message": m, "logprobs": None, "finish_reason": finish_reason} for i, m in enumerate(messages)
    ]
    return {**HEAD, "object": "chat.completion", "choices": choices, "usage": USAGE}


TOOL_CALLS = [
    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
    {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
]

COMPLETIONS = {
    "content": chat_completion({"role": "assistant", "content": "Paris is the capital of France."}),
    "empty content": chat_completion({"role": "assistant", "content": ""}, finish_reason="length"),
    "tool calls": chat_completion(
        {"role": "assistant", "content": None, "tool_calls": TOOL_CALLS}, finish_reason="tool_calls"
    ),
    "content and tool calls": chat_completion(
        {"role": "assistant", "content": "Let me check.", "tool_calls": TOOL_CALLS[:1]}, finish_reason="tool_calls"
    ),
    "refusal": chat_completion({"role": "assistant", "content": None, "refusal": "I can't help with that."}),
    "n=2": chat_completion({"role": "assistant", "content": "one"}, {"role": "assistant", "content": "two"}),
    "text": {
        **HEAD,
        "object": "text_completion",
        "choices": [
            {"index": 0, "text": " upon a time", "logprobs": None, "finish_reason": "length"},
            {"index": 1, "text": "", "logprobs": None, "finish_reason": "stop"},
        ],
        "usage": USAGE,
    },
}


@pytest.mark.parametrize("include_usage", [True, False])
@pytest.mark.parametrize("name", list(COMPLETIONS))
def test_events_assemble_back_into_the_completion(name: str, include_usage: bool) -> None:
    original = COMPLETIONS[name]
    events = completion_to_events(orjson.dumps(original), include_usage=include_usage)
    assembler = StreamAssembler()
    for event in events:
        assembler.feed(event)
    result = assembler.result()
    assert result is not None
    expected = original if include_usage else {k: v for k, v in original.items() if k != "usage"}
    assert orjson.loads(result) == expected


def test_chat_events_look_like_openai_chunks() -> None:
    body = orjson.dumps(COMPLETIONS["content and tool calls"])
    chunks = [orjson.loads(e) for e in completion_to_events(body, include_usage=True)]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "chatcmpl-abc" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[1]["choices"][0]["delta"] == {"content": "Let me check."}
    assert chunks[2]["choices"][0]["delta"]["tool_calls"][0]["index"] == 0
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == USAGE
    assert all(c["usage"] is None for c in chunks[:-1])
    plain = [orjson.loads(e) for e in completion_to_events(body, include_usage=False)]
    assert all("usage" not in c for c in plain) and len(plain) == len(chunks) - 1


def test_upstream_style_stream_with_fragmented_tool_calls() -> None:
    """Upstreams split tool-call arguments over many chunks and send the id and name once."""
    head = {**HEAD, "object": "chat.completion.chunk"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return orjson.dumps({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    events = [
        chunk({"role": "assistant", "content": None}),
        chunk({"tool_calls": [call]}),
        *(
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
            for part in ['{"ci', 'ty": ', '"Paris"}']
        ),
        chunk({}, "tool_calls"),
        orjson.dumps({**head, "choices": [], "usage": USAGE}),
    ]
    assembler = StreamAssembler()
    for event in events:
        assembler.feed(event)
    result = assembler.result()
    assert result is not None
    assert orjson.loads(result) == chat_completion(
        {"role": "assistant", "content": None, "tool_calls": TOOL_CALLS[:1]}, finish_reason="tool_calls"
    )


def test_incomplete_or_broken_streams_give_nothing() -> None:
    events = completion_to_events(orjson.dumps(COMPLETIONS["n=2"]), include_usage=True)
    cases = {
        "no finish": [e for e in events if b'"finish_reason":"stop"' not in e],
        "error event": [*events[:2], b'{"error": {"message": "upstream died"}}', *events[2:]],
        "not json": [events[0], b"{not json", *events[1:]],
        "empty": [],
        "only usage": events[-1:],
    }
    for name, stream in cases.items():
        assembler = StreamAssembler()
        for event in stream:
            assembler.feed(event)
        assert assembler.result() is None, name


def test_assembler_stops_collecting_past_max_bytes() -> None:
    events = completion_to_events(orjson.dumps(COMPLETIONS["content"]), include_usage=False)
    assembler = StreamAssembler(max_bytes=sum(len(e) for e in events) - 1)
    for event in events:
        assembler.feed(event)
    assert assembler.result() is None


def test_logprobs_slices_are_concatenated() -> None:
    head = {**HEAD, "object": "chat.completion.chunk"}
    first = [{"token": "Hi", "logprob": -0.1, "top_logprobs": []}]
    second = [{"token": "!", "logprob": -0.2, "top_logprobs": []}]
    assembler = StreamAssembler()
    for delta, logprobs, finish in [
        ({"role": "assistant", "content": "Hi"}, {"content": first, "refusal": None}, None),
        ({"content": "!"}, {"content": second, "refusal": None}, None),
        ({}, None, "stop"),
    ]:
        choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        assembler.feed(orjson.dumps({**head, "choices": [choice]}))
    result = assembler.result()
    assert result is not None
    assert orjson.loads(result)["choices"][0]["logprobs"] == {"content": first + second, "refusal": None}
    replayed = StreamAssembler()
    for event in completion_to_events(result, include_usage=False):
        replayed.feed(event)
    assert replayed.result() == result
