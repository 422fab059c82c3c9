"""Request normalization, keys, what may be cached, and the semantic split and guard."""

from __future__ import annotations

import orjson
import pytest

from goldenpath.cache import ResponseCache
from goldenpath.cache._keys import complete_answer, conflicting, normalize, request_key, semantic_parts
from goldenpath.config import CacheConfig
from tests.cache.conftest import ON, chat, chat_answer


def test_stream_options_and_user_do_not_change_the_key() -> None:
    plain = chat("hi")
    assert request_key("chat", plain) == request_key(
        "chat", {**plain, "stream": True, "stream_options": {"include_usage": True}, "user": "u-1"}
    )


def test_defaults_nulls_and_number_spelling_do_not_change_the_key() -> None:
    base = request_key("chat", chat("hi"))
    assert request_key("chat", chat("hi", temperature=0.0)) == base
    assert request_key("chat", chat("hi", n=1, seed=None)) == base
    assert request_key("embeddings", {"model": "e", "input": "x"}) == request_key(
        "embeddings", {"model": "e", "input": "x", "encoding_format": "float"}
    )
    assert request_key("chat", dict(reversed(chat("hi").items()))) == base


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.2},
        {"model": "other"},
        {"messages": [{"role": "user", "content": "hello"}]},
        {"max_tokens": 5},
        {"max_completion_tokens": 5},
        {"top_p": 0.5},
        {"stop": ["\n"]},
        {"seed": 7},
        {"n": 2},
        {"presence_penalty": 1},
        {"logit_bias": {"50256": -100}},
        {"response_format": {"type": "json_object"}},
        {"tools": [{"type": "function", "function": {"name": "f"}}]},
        {"tool_choice": "required"},
        {"ignore_eos": True},  # unknown fields reach the upstream, so they count
    ],
)
def test_fields_that_change_the_answer_change_the_key(change: dict[str, object]) -> None:
    assert request_key("chat", chat("hi")) != request_key("chat", chat("hi", **change))


def test_operation_is_part_of_the_key() -> None:
    body = {"model": "m", "temperature": 0, "prompt": "hi"}
    assert request_key("completions", body) != request_key("chat", body)
    embeddings = {"model": "e", "input": "x"}
    assert request_key("embeddings", embeddings) != request_key("embeddings", {**embeddings, "dimensions": 8})


def test_cacheable() -> None:
    cache = ResponseCache(ON)
    assert cache.cacheable("chat", chat("hi"), ON)
    assert not cache.cacheable("chat", chat("hi"), CacheConfig())  # disabled
    assert not cache.cacheable("chat", chat("hi", temperature=0.7), ON)
    missing = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert not cache.cacheable("chat", missing, ON)  # the upstream's default temperature is not 0
    assert not cache.cacheable("completions", {"model": "m", "prompt": "x", "temperature": None}, ON)
    assert cache.cacheable("chat", missing, ON.model_copy(update={"deterministic_only": False}))
    assert cache.cacheable("embeddings", {"model": "e", "input": "x"}, ON)
    assert not cache.cacheable("images", chat("hi"), ON)


def test_semantic_partition_is_everything_but_the_last_user_text() -> None:
    def part(body: dict[str, object]) -> tuple[str, str] | None:
        return semantic_parts(normalize("chat", body), "all-minilm-l6-v2")

    a, b = part(chat("What is the capital of France?")), part(chat("France's capital?", stream=True))
    assert a is not None and b is not None
    assert a[0] == b[0] and a[1] == "What is the capital of France?"
    system = [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Capital of France?"}]
    for other in (chat("x", model="other"), chat("x", max_tokens=3), chat("x", messages=system)):
        found = part(other)
        assert found is not None and found[0] != a[0]
    assert part(chat("x", messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])) is None
    image = [{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "data:"}}]
    assert part(chat("x", messages=[{"role": "user", "content": image}])) is None
    text_parts = [{"type": "text", "text": "what"}, {"type": "text", "text": "is this"}]
    assert part(chat("x", messages=[{"role": "user", "content": text_parts}])) == (a[0], "what\nis this")


@pytest.mark.parametrize(
    ("stored", "query"),
    [
        ("Convert 100 US dollars to euros.", "Convert 100 euros to US dollars."),
        ("How do I convert a list to a string in Python?", "How do I convert a string to a list in Python?"),
        ("What is the tax rate on stocks held over a year?", "What is the tax rate on stocks held under a year?"),
        ("What is 15% of 80?", "What is 15% of 90?"),
        ("How long do I bake chicken at 400°F?", "How long do I bake salmon at 400°F?"),
    ],
)
def test_minimal_edits_conflict(stored: str, query: str) -> None:
    assert conflicting(stored, query)


@pytest.mark.parametrize(
    ("stored", "query"),
    [
        ("What is the capital of France?", "What's France's capital city?"),
        ("What is an index fund?", "Can you explain what an index fund is?"),
        ("Why is the sky blue?", "What makes the sky appear blue?"),
        ("Same words.", "same words"),
    ],
)
def test_paraphrases_do_not_conflict(stored: str, query: str) -> None:
    assert not conflicting(stored, query)


def test_complete_answer() -> None:
    assert complete_answer("chat", chat("hi"), chat_answer("yes"))
    assert not complete_answer("chat", chat("hi"), b'{"error": {"message": "boom"}}')
    assert not complete_answer("chat", chat("hi"), b"not json")
    assert not complete_answer("chat", chat("hi"), chat_answer("yes", finish_reason=None))
    assert not complete_answer("chat", chat("hi", n=2), chat_answer("yes"))  # one choice of two
    assert complete_answer("chat", chat("hi", n=2), chat_answer("yes", n=2))

    def text(n: int) -> bytes:
        choices = [{"index": i, "text": "x", "finish_reason": "length"} for i in range(n)]
        return orjson.dumps({"object": "text_completion", "choices": choices})

    assert complete_answer("completions", {"prompt": "a"}, text(1))
    assert complete_answer("completions", {"prompt": [1, 2, 3]}, text(1))  # one tokenized prompt
    assert complete_answer("completions", {"prompt": ["a", "b"], "n": 2}, text(4))
    assert not complete_answer("completions", {"prompt": ["a", "b"]}, text(1))

    vectors = orjson.dumps({"object": "list", "data": [{"embedding": [0.1]}, {"embedding": [0.2]}]})
    assert complete_answer("embeddings", {"input": ["a", "b"]}, vectors)
    assert not complete_answer("embeddings", {"input": ["a", "b", "c"]}, vectors)
