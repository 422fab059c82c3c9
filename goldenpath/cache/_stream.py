"""Between stored answers and streams: replay a completion as SSE payloads, assemble a stream into one."""

from __future__ import annotations

from typing import Any

import orjson


def completion_to_events(body: bytes, *, include_usage: bool) -> list[bytes]:
    """The SSE payloads (no ``data:`` framing, no ``[DONE]``) that stream a stored completion.

    A ``chat.completion`` becomes ``chat.completion.chunk`` objects: per choice a role chunk, a
    content chunk, one chunk per tool call and a finish chunk; a ``text_completion`` becomes text
    chunks and a finish chunk per choice. With ``include_usage`` every chunk carries ``"usage": null``
    and a last chunk with ``"choices": []`` carries the usage, as OpenAI streams do.
    """
    completion = orjson.loads(body)
    chat = completion.get("object") == "chat.completion"
    head: dict[str, Any] = {
        "id": completion.get("id"),
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": completion.get("created"),
        "model": completion.get("model"),
    }
    if "system_fingerprint" in completion:
        head["system_fingerprint"] = completion["system_fingerprint"]
    if include_usage:
        head["usage"] = None

    events: list[bytes] = []
    for choice in completion["choices"]:
        index = choice.get("index", 0)
        if chat:
            deltas = _chat_deltas(choice.get("message") or {})
            base: dict[str, Any] = {"index": index, "delta": {}, "logprobs": None, "finish_reason": None}
        else:
            deltas = [{"text": choice["text"]}] if choice.get("text") else []
            base = {"index": index, "text": "", "logprobs": None, "finish_reason": None}
        parts = [{**base, "delta": delta} if chat else {**base, **delta} for delta in deltas]
        parts.append({**base, "finish_reason": choice.get("finish_reason")})
        if choice.get("logprobs") is not None:  # with the last text, or the finish chunk if none
            parts[max(len(parts) - 2, 0)]["logprobs"] = choice["logprobs"]
        events.extend(orjson.dumps({**head, "choices": [part]}) for part in parts)
    if include_usage and completion.get("usage") is not None:
        events.append(orjson.dumps({**head, "choices": [], "usage": completion["usage"]}))
    return events


def _chat_deltas(message: dict[str, Any]) -> list[dict[str, Any]]:
    first: dict[str, Any] = {"role": message.get("role", "assistant")}
    content = message.get("content")
    if isinstance(content, str):
        first["content"] = ""  # a string, even empty, tells the assembler the content was not null
    deltas = [first]
    if content:
        deltas.append({"content": content})
    if message.get("refusal"):
        deltas.append({"refusal": message["refusal"]})
    for i, call in enumerate(message.get("tool_calls") or []):
        deltas.append({"tool_calls": [{"index": i, **call}]})
    return deltas


class _Choice:
    __slots__ = ("content", "finish_reason", "logprobs", "refusal", "role", "tool_calls")

    def __init__(self) -> None:
        self.role = "assistant"
        self.content: list[str] | None = None
        self.refusal: list[str] | None = None
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.logprobs: Any = None
        self.finish_reason: str | None = None


class StreamAssembler:
    """Rebuild the non-streaming answer from the payloads of a streamed chat or text completion.

    ``feed`` every payload as it passes; ``result`` gives the equivalent ``chat.completion`` /
    ``text_completion`` JSON, or None when the stream was not a whole, valid answer (an error event,
    unparsable JSON, a choice without ``finish_reason``) or outgrew ``max_bytes``.
    """

    def __init__(self, *, max_bytes: int | None = None) -> None:
        self._max_bytes = max_bytes
        self._seen = 0
        self._broken = False
        self._head: dict[str, Any] = {}
        self._object: str | None = None
        self._choices: dict[int, _Choice] = {}
        self._usage: Any = None

    def feed(self, payload: bytes) -> None:
        if self._broken:
            return
        self._seen += len(payload)
        if self._max_bytes is not None and self._seen > self._max_bytes:
            self._fail()
            return
        try:
            chunk = orjson.loads(payload)
            self._take(chunk)
        except (orjson.JSONDecodeError, TypeError, KeyError, AttributeError, ValueError):
            self._fail()

    def _fail(self) -> None:
        self._broken = True
        self._choices.clear()

    def _take(self, chunk: Any) -> None:
        if not isinstance(chunk, dict) or "error" in chunk:
            raise ValueError("not a completion chunk")
        obj = chunk.get("object")
        if obj not in ("chat.completion.chunk", "text_completion") or self._object not in (None, obj):
            raise ValueError("unexpected object")
        self._object = obj
        for field in ("id", "created", "model", "system_fingerprint"):
            if chunk.get(field) is not None:
                self._head[field] = chunk[field]
        if chunk.get("usage") is not None:
            self._usage = chunk["usage"]
        for part in chunk["choices"]:
            choice = self._choices.setdefault(int(part.get("index", 0)), _Choice())
            if obj == "text_completion":
                if part.get("text"):
                    choice.content = [*(choice.content or []), part["text"]]
            else:
                self._take_delta(choice, part.get("delta") or {})
            if part.get("logprobs") is not None:
                choice.logprobs = _merge_logprobs(choice.logprobs, part["logprobs"])
            if part.get("finish_reason") is not None:
                choice.finish_reason = part["finish_reason"]

    @staticmethod
    def _take_delta(choice: _Choice, delta: dict[str, Any]) -> None:
        if delta.get("role"):
            choice.role = delta["role"]
        if isinstance(delta.get("content"), str):
            choice.content = [*(choice.content or []), delta["content"]]
        if isinstance(delta.get("refusal"), str):
            choice.refusal = [*(choice.refusal or []), delta["refusal"]]
        for call in delta.get("tool_calls") or []:
            merged = choice.tool_calls.setdefault(int(call["index"]), {"function": {}})
            for field in ("id", "type"):
                if call.get(field):
                    merged[field] = call[field]
            function = call.get("function") or {}
            if function.get("name"):
                merged["function"]["name"] = function["name"]
            if function.get("arguments") is not None:
                merged["function"]["arguments"] = merged["function"].get("arguments", "") + function["arguments"]

    def result(self) -> bytes | None:
        if self._broken or not self._choices or sorted(self._choices) != list(range(len(self._choices))):
            return None
        if any(c.finish_reason is None for c in self._choices.values()):
            return None
        chat = self._object == "chat.completion.chunk"
        out: dict[str, Any] = {
            "id": self._head.get("id"),
            "object": "chat.completion" if chat else "text_completion",
            "created": self._head.get("created"),
            "model": self._head.get("model"),
        }
        if "system_fingerprint" in self._head:
            out["system_fingerprint"] = self._head["system_fingerprint"]
        out["choices"] = [self._choice(i, c, chat) for i, c in sorted(self._choices.items())]
        if self._usage is not None:
            out["usage"] = self._usage
        return orjson.dumps(out)

    @staticmethod
    def _choice(index: int, choice: _Choice, chat: bool) -> dict[str, Any]:
        text = None if choice.content is None else "".join(choice.content)
        if not chat:
            return {
                "index": index,
                "text": text or "",
                "logprobs": choice.logprobs,
                "finish_reason": choice.finish_reason,
            }
        message: dict[str, Any] = {"role": choice.role, "content": text}
        if choice.refusal is not None:
            message["refusal"] = "".join(choice.refusal)
        if choice.tool_calls:
            message["tool_calls"] = [choice.tool_calls[i] for i in sorted(choice.tool_calls)]
        return {"index": index, "message": message, "logprobs": choice.logprobs, "finish_reason": choice.finish_reason}


def _merge_logprobs(seen: Any, new: Any) -> Any:
    """Chat logprobs arrive as ``{"content": [...]}`` slices; text ones as parallel lists. Concatenate."""
    if not isinstance(seen, dict) or not isinstance(new, dict):
        return new
    merged = dict(seen)
    for key, value in new.items():
        if isinstance(value, list):
            merged[key] = (merged.get(key) or []) + value
        elif value is not None or key not in merged:
            merged[key] = value
    return merged
