"""Guards on the request path: input and context stages before the upstream call, output after it.

Input: each user message (string content) is checked at the ``input`` stage and each tool or function
result at the ``context`` stage; a block answers 400 ``guard_blocked``, a redaction replaces the text
the upstream sees (placeholders numbered across the whole request), a flag adds a header.
Output: a non-streamed answer is checked per choice; a streamed one through a ``StreamGuard`` per
choice. A block ends that answer the way Azure OpenAI does: ``finish_reason: "content_filter"``
(non-streamed: status 200, the content replaced by a notice; streamed: a last chunk, then
``[DONE]``), plus a ``goldenpath_guard`` object saying which detectors fired. Every decision is
kept on the request (``GuardState.decisions``: stage, detector, action, score, kind; never text) and
logged to the ``goldenpath.guard`` logger when the request finishes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from goldenpath.config import Settings
from goldenpath.gateway._errors import APIError
from goldenpath.providers import Usage
from goldenpath.telemetry import GatewayMetrics

if TYPE_CHECKING:  # the guard package loads Presidio and the detectors (~2 s): only when a guard is on
    from goldenpath.guard import Decision, Guard, Stage, StreamGuard, Verdict

log = logging.getLogger("goldenpath.guard")

_CONTEXT_ROLES = frozenset({"tool", "function"})


def build_guards(settings: Settings) -> dict[str, Guard]:
    """A guard per alias whose guard is enabled; aliases with the same policy share one."""
    configs = {a.name: a.guard or settings.guard for a in settings.models}
    if not any(c.enabled for c in configs.values()):
        return {}
    from pydantic import ValidationError

    from goldenpath.guard import Guard, GuardPolicy

    built: dict[str, Guard] = {}
    guards: dict[str, Guard] = {}
    for alias, config in configs.items():
        if not config.enabled:
            continue
        try:
            policy = GuardPolicy.model_validate(config.policy)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"guard policy of model {alias!r}: {where}: {first['msg']}") from None
        key = policy.model_dump_json()
        if key not in built:
            built[key] = Guard(policy)
        guards[alias] = built[key]
    return guards


def check(guard: Guard, text: str, stage: Stage) -> Verdict:
    """A verdict, carrying the redacted text when the action is to redact."""
    verdict = guard.check(text, stage)
    if verdict.action == "redact":
        verdict = verdict.model_copy(update={"redacted": guard.redact(text, verdict, stage=stage).text})
    return verdict


@dataclass(slots=True, eq=False)
class GuardState:
    """One request's guard: its decisions so far and the placeholders to restore in the answer."""

    guard: Guard
    mapping: dict[str, str] = field(default_factory=dict, repr=False)  # never recorded
    decisions: list[Decision] = field(default_factory=list)

    @property
    def checks_output(self) -> bool:
        return bool(self.mapping) or self.guard.runs_at("output")

    def finish(self, rid: str, model: str | None, metrics: GatewayMetrics) -> None:
        """Count and log the decisions (no text, no span) once the request is over."""
        for d in self.decisions:
            if d.action != "allow":
                metrics.guard.labels(d.action, d.type).inc()
        if self.decisions:
            log.info(
                "%s",
                orjson.dumps(
                    {"request_id": rid, "model": model, "decisions": [d.model_dump() for d in self.decisions]}
                ).decode(),
            )


def estimated_usage(body: dict[str, Any], generated_chars: int) -> Usage:
    """Tokens of a stream cut short by the output guard, at about four characters a token: the prompt as sent and
    what the upstream generated until the block (the upstream's own count never arrives)."""
    prompt = body.get("messages") if "messages" in body else body.get("prompt")
    return Usage(prompt_tokens=-(-len(orjson.dumps(prompt)) // 4), completion_tokens=-(-generated_chars // 4))


def _kinds(decisions: list[Decision]) -> str:
    return ",".join(sorted({d.type for d in decisions}))


def _worst(decisions: list[Decision]) -> str:
    return next((a for a in ("block", "redact", "flag") if any(d.action == a for d in decisions)), "allow")


async def guard_request(state: GuardState, body: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[bytes, bytes]]]:
    """Check a chat request's user messages (input) and tool results (context).

    Returns the body to send upstream and response headers; raises a 400 on a block.
    """
    guard = state.guard
    messages = body["messages"]
    texts: list[tuple[int, Stage, str]] = []
    for i, m in enumerate(messages):
        stage: Stage | None = "input" if m["role"] == "user" else "context" if m["role"] in _CONTEXT_ROLES else None
        if stage is not None and isinstance(m.get("content"), str) and guard.runs_at(stage):
            texts.append((i, stage, m["content"]))
    if not texts:
        return body, []
    verdicts = await asyncio.to_thread(lambda: [guard.check(text, stage) for _, stage, text in texts])
    fired: list[Decision] = []
    for (_, stage, _), verdict in zip(texts, verdicts, strict=True):
        fired += guard.decisions(verdict, stage)
    state.decisions += fired
    if not any(v.flagged for v in verdicts):
        return body, []
    flagged = [d for d in fired if d.action != "allow"]
    kinds = _kinds(flagged)
    if any(v.action == "block" for v in verdicts):
        stages = " and ".join(sorted({s for (_, s, _), v in zip(texts, verdicts, strict=True) if v.action == "block"}))
        raise APIError(
            400,
            f"The request was blocked by the {stages} guard ({kinds}).",
            code="guard_blocked",
            headers=[(b"x-goldenpath-guard", f"block:{kinds}".encode())],
        )
    if any(v.action == "redact" for v in verdicts):
        messages = list(messages)
        for (i, stage, text), verdict in zip(texts, verdicts, strict=True):
            if verdict.action == "redact":
                redaction = guard.redact(text, verdict, state.mapping, stage=stage)
                state.mapping = redaction.mapping
                messages[i] = {**messages[i], "content": redaction.text}
        body = {**body, "messages": messages}
    return body, [(b"x-goldenpath-guard", f"{_worst(flagged)}:{kinds}".encode())]


def _notice(decisions: list[Decision]) -> str:
    return f"The response was withheld by the output guard ({_kinds(decisions)})."


def _report(decisions: list[Decision]) -> dict[str, Any]:
    """The ``goldenpath_guard`` object of a filtered answer: what fired, never the text."""
    return {
        "stage": "output",
        "action": "block",
        "message": _notice(decisions),
        "detections": [{"type": d.type, "score": d.score, "detail": d.detail} for d in decisions],
    }


_INLINE_CHARS = 8000  # below this, output checks without MiniLM take ~1 ms or less: no thread hop


def inline_output(state: GuardState, size: int) -> bool:
    """Whether output checks can run on the event loop: small, and no topic check (MiniLM, ~35 ms)."""
    return size <= _INLINE_CHARS and not state.guard._runs("topic", "output")


async def guard_response_async(state: GuardState, body: bytes) -> tuple[bytes, list[tuple[bytes, bytes]], bool]:
    """``guard_response``, in a worker thread when it could hold the event loop for long."""
    if inline_output(state, len(body)):
        return guard_response(state, body)
    return await asyncio.to_thread(guard_response, state, body)


def guard_response(state: GuardState, body: bytes) -> tuple[bytes, list[tuple[bytes, bytes]], bool]:
    """Check and fix a non-streamed answer: (client body, headers, whether the answer may be cached).

    Redacted and blocked choices are rewritten; placeholders are restored. An answer that carries
    restored values or a block is not cached (a hit would replay one user's values to another).
    """
    guard = state.guard
    answer = orjson.loads(body)
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list):
        return body, [], True
    changed = blocked = False
    fired: list[Decision] = []
    for choice in choices:
        message = choice.get("message")
        holder, key = (message, "content") if isinstance(message, dict) else (choice, "text")
        text = holder.get(key)
        if not isinstance(text, str) or not text:
            continue
        verdict = guard.check(text, "output") if guard.runs_at("output") else None
        decisions = guard.decisions(verdict, "output") if verdict is not None else []
        fired += decisions
        if verdict is not None and verdict.action == "block":
            holder[key] = _notice([d for d in decisions if d.action == "block"])
            choice["finish_reason"] = "content_filter"
            blocked = changed = True
            continue
        new = text
        if verdict is not None and verdict.action == "redact":
            new = guard.redact(text, verdict, stage="output").text
        if state.mapping:
            from goldenpath.guard import restore

            new = restore(new, state.mapping)
        if new != text:
            holder[key] = new
            changed = True
    state.decisions += fired
    if blocked:
        answer["goldenpath_guard"] = _report([d for d in fired if d.action == "block"])
    flagged = [d for d in fired if d.action != "allow"]
    headers = [(b"x-goldenpath-guard-output", f"{_worst(flagged)}:{_kinds(flagged)}".encode())] if flagged else []
    return (orjson.dumps(answer) if changed else body), headers, not blocked and not state.mapping


class StreamFilter:
    """Rewrites a streamed answer's chunks as the output guard releases text (one ``StreamGuard`` per choice).

    ``on_event`` takes one upstream SSE payload and returns the payloads to send (none while text is
    held back); after a block it returns the last chunk (``finish_reason: "content_filter"``) and
    ``blocked`` is set: the caller sends it, then ``[DONE]``, and stops reading the upstream.
    ``end`` releases what is still held when the upstream ended without a finish reason.
    """

    def __init__(self, state: GuardState) -> None:
        self.state = state
        self.inline = inline_output(state, 0)  # each check reads a bounded window; MiniLM only for topics
        self.blocked = False
        self.generated_chars = 0  # what the upstream generated, held back or not: a blocked answer is charged for it
        self._guards: dict[int, StreamGuard] = {}
        self._open: set[int] = set()  # choices that have not finished
        self._template: dict[str, Any] = {}
        self._chat = True

    def _stream_guard(self, index: int) -> StreamGuard:
        sg = self._guards.get(index)
        if sg is None:
            from goldenpath.guard import StreamGuard

            sg = self._guards[index] = StreamGuard(self.state.guard, "output", self.state.mapping)
        return sg

    def on_event(self, event: bytes) -> list[bytes]:
        if b'"choices"' not in event:
            return [event]
        chunk = orjson.loads(event)
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices:
            return [event]
        self._chat = chunk.get("object") != "text_completion"
        self._template = {k: v for k, v in chunk.items() if k not in ("choices", "usage")}
        changed = False
        kept: list[dict[str, Any]] = []
        for choice in choices:
            index = int(choice.get("index", 0))
            self._open.add(index)
            holder, key = (choice.get("delta") or {}, "content") if self._chat else (choice, "text")
            text = holder.get(key)
            finished = choice.get("finish_reason") is not None
            if isinstance(text, str):
                self.generated_chars += len(text)
            if (isinstance(text, str) and text) or finished:
                sg = self._stream_guard(index)
                released = sg.feed(text) if isinstance(text, str) and text else None
                rest = sg.finish() if finished else None
                if (released and released.blocked) or (rest and rest.blocked):
                    return [self._blocked_event()]
                new = (released.text if released else "") + (rest.text if rest else "")
                if new != (text or ""):
                    changed = True
                    if self._chat:
                        choice["delta"] = {**holder, key: new}
                    else:
                        choice[key] = new
                if finished:
                    self._open.discard(index)
                elif not new and set(holder) <= {key}:
                    continue  # nothing to say yet: drop this choice from the chunk
            kept.append(choice)
        if not changed:
            return [event]
        if not kept and chunk.get("usage") is None:
            return []
        return [orjson.dumps({**chunk, "choices": kept})]

    def end(self) -> list[bytes]:
        """Release held text of choices the upstream never finished."""
        out: list[bytes] = []
        for index in sorted(self._open):
            step = self._stream_guard(index).finish()
            if step.blocked:
                return [self._blocked_event()]
            if step.text:
                content: dict[str, Any] = {"delta": {"content": step.text}} if self._chat else {"text": step.text}
                choice = {"index": index, **content, "finish_reason": None}
                out.append(orjson.dumps({**self._template, "choices": [choice]}))
        self._collect()
        return out

    def _blocked_event(self) -> bytes:
        self.blocked = True
        self._collect()
        blocking = [d for d in self.state.decisions if d.stage == "output" and d.action == "block"]
        empty: dict[str, Any] = {"delta": {}} if self._chat else {"text": ""}
        choices = [{"index": i, **empty, "finish_reason": "content_filter"} for i in sorted(self._open) or [0]]
        return orjson.dumps({**self._template, "choices": choices, "goldenpath_guard": _report(blocking)})

    def _collect(self) -> None:
        """Move the stream guards' decisions onto the request (once)."""
        for sg in self._guards.values():
            self.state.decisions += sg.decisions.values()
            sg.decisions = {}
