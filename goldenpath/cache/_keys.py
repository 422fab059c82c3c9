"""What a request means to the cache: its normalized form, its keys, and which answers may be kept."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

OPERATIONS = frozenset({"chat", "completions", "embeddings"})

# Fields that never change the answer. Everything else (unknown fields included: they reach the
# upstream and may change what it says) is part of the key.
_IGNORED = frozenset({"stream", "stream_options", "user"})
_FLOAT_FIELDS = frozenset({"temperature", "top_p", "presence_penalty", "frequency_penalty"})
_DEFAULTS: dict[str, object] = {"n": 1, "encoding_format": "float"}


def normalize(op: str, body: dict[str, Any]) -> dict[str, Any]:
    """The request as the cache sees it: the operation and every field that can change the answer.

    ``null`` and default values are dropped and integral floats written as floats, so ``"n": 1`` or
    ``"temperature": 0`` hash like their absent or ``0.0`` spellings.
    """
    fields: dict[str, Any] = {}
    for name, value in body.items():
        if name in _IGNORED or value is None:
            continue
        if name in _FLOAT_FIELDS and type(value) is int:
            value = float(value)
        if name in _DEFAULTS and type(value) is type(_DEFAULTS[name]) and value == _DEFAULTS[name]:
            continue
        fields[name] = value
    return {"op": op, "request": fields}


def digest(value: Any) -> str:
    """sha256 of canonical JSON (sorted keys)."""
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()


def request_key(op: str, body: dict[str, Any]) -> str:
    """The exact-match key of a request (the tenant is added by the store, never hashed away)."""
    return digest(normalize(op, body))


def semantic_parts(normalized: dict[str, Any], model: str) -> tuple[str, str] | None:
    """Split a normalized chat request into (partition id, last user text), or None if it has none.

    The partition id hashes everything but the last user message's text: earlier turns, system
    prompt, tools, model and sampling must match exactly; only that text is compared by meaning.
    """
    if normalized["op"] != "chat":
        return None
    request = normalized["request"]
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "user":
        return None
    text = _text(last.get("content"))
    if not text:
        return None
    rest = {k: v for k, v in last.items() if k != "content"}
    context = {**request, "messages": [*messages[:-1], rest]}
    return digest({"context": context, "embedding_model": model}), text


def _text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return None
    parts: list[str] = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            return None  # images, audio, files: compare those exactly only
        parts.append(part["text"])
    return "\n".join(parts)


# Words that carry no question of their own; every other word is a content word.
_FUNCTION_WORDS_TEXT = """
a an the is are am was were be been being do does did i me my mine you your yours we us our it its
this that these those can could would should will shall may might must please there here to of in
on for at by as and so just s get some any
"""
_FUNCTION_WORDS = frozenset(_FUNCTION_WORDS_TEXT.split())
_WORD = re.compile(r"\w+")


def _content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _FUNCTION_WORDS]


def conflicting(stored: str, query: str) -> bool:
    """Whether two texts close in embedding space are likely different questions.

    Mean-pooled embeddings cannot see word order and weigh one changed word lightly, so their
    nearest neighbours include minimal edits that change the answer. Two shapes are refused: the
    same content words in another order ("convert dollars to euros" / "euros to dollars"), and one or
    two content words replaced by one or two others ("held over a year" / "held under a year").
    """
    a, b = _content_words(stored), _content_words(query)
    only_a, only_b = len(set(a) - set(b)), len(set(b) - set(a))
    if only_a == only_b == 0:
        return a != b and sorted(a) == sorted(b)
    return 1 <= only_a <= 2 and 1 <= only_b <= 2


def deterministic(body: dict[str, Any]) -> bool:
    """temperature is present and 0 (a missing temperature means the upstream's default, often 1)."""
    t = body.get("temperature")
    return type(t) in (int, float) and t == 0


def _input_count(value: Any) -> int:
    """How many prompts or inputs a ``prompt``/``input`` field holds (a token list is one)."""
    if isinstance(value, list) and value and not all(type(v) is int for v in value):
        return len(value)
    return 1


def complete_answer(op: str, body: dict[str, Any], response: bytes) -> bool:
    """Whether ``response`` is a whole, successful answer to ``body`` (not an error, not partial)."""
    try:
        parsed = orjson.loads(response)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(parsed, dict) or "error" in parsed:
        return False
    if op == "embeddings":
        data = parsed.get("data")
        return parsed.get("object") == "list" and isinstance(data, list) and len(data) == _input_count(body["input"])
    n = body.get("n") or 1
    if op == "chat":
        obj, expected, content = "chat.completion", n, "message"
    else:
        obj, expected, content = "text_completion", n * _input_count(body.get("prompt")), "text"
    choices = parsed.get("choices")
    if parsed.get("object") != obj or not isinstance(choices, list) or len(choices) != expected:
        return False
    return all(isinstance(c, dict) and content in c and isinstance(c.get("finish_reason"), str) for c in choices)
