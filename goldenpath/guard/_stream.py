"""Checking an answer while it streams: release text only after it was checked.

``StreamGuard.feed(delta)`` buffers deltas and checks at sentence ends and line breaks, or after
``check_chars`` new characters, over a window of the last ``context_chars`` characters already sent
plus everything not yet sent, so each check costs about the same and the total stays linear in the
answer's length. What a check clears is released, except the last ``hold_chars`` characters: a card
number, key or placeholder that is still arriving delta by delta sits in that tail, so it is redacted
(or restored) whole before any of it leaves. The price is latency: the client sees text up to one
sentence (or ``check_chars``) plus ``hold_chars`` later than the upstream produced it. A detection
longer than the tail (a private key block) is held back from its start while it is incomplete, as
long as the detector already matches its beginning; a secret no detector recognizes until it is
complete and longer than the tail could leak its first part.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from goldenpath.guard._pipeline import _SEVERITY, Guard, restore
from goldenpath.guard._types import Action, Decision, Detection, Stage, Verdict

_BOUNDARY = re.compile(r"[.!?](?=\s)|\n")
_PLACEHOLDER_MAX = 48  # longest placeholder to keep whole: "<" + label + "_" + number + ">"


@dataclass(frozen=True, slots=True)
class StreamStep:
    """What to send now; ``blocked``: stop the stream (``text`` is then empty)."""

    text: str
    blocked: bool = False
    verdict: Verdict | None = None  # the detections that fired in this step, when any did


class StreamGuard:
    """One streamed text (one choice of an answer) checked incrementally at one stage.

    ``mapping``: placeholders from the input stage to restore in the released text (empty: none).
    ``decisions`` collects, per detector kind and detail, the highest-scoring decision of the stream.
    """

    def __init__(self, guard: Guard, stage: Stage = "output", mapping: Mapping[str, str] | None = None) -> None:
        self.guard = guard
        self.stage: Stage = stage
        self.mapping = dict(mapping or {}) if guard.policy.pii.restore else {}
        self.limits = guard.policy.stream
        self.decisions: dict[tuple[str, str], Decision] = {}
        self.blocked = False
        self._pending = ""  # received, not yet sent
        self._context = ""  # the tail of what was sent, re-read by each check
        self._unchecked = 0  # characters received since the last check
        self._scanned = 0  # how far into _pending sentence ends were already looked for

    def feed(self, delta: str) -> StreamStep:
        if self.blocked:
            return StreamStep("", blocked=True)
        self._pending += delta
        self._unchecked += len(delta)
        limit = len(self._pending) - self.limits.hold_chars
        if limit <= self._scanned:
            return StreamStep("")
        # one character past the limit, so the look-ahead after a full stop sees the space
        found = _BOUNDARY.finditer(self._pending, max(0, self._scanned - 1), limit + 1)
        ends = [m.end() for m in found if m.end() <= limit]
        self._scanned = limit
        if ends:
            cut = ends[-1]
        elif self._unchecked >= self.limits.check_chars:
            space = self._pending.rfind(" ", 0, limit)
            cut = space + 1 if space > 0 else limit
        else:
            return StreamStep("")
        return self._release(cut, final=False)

    def finish(self) -> StreamStep:
        """Check and release whatever is left (the stream ended)."""
        if self.blocked:
            return StreamStep("", blocked=True)
        if not self._pending:
            return StreamStep("")
        return self._release(len(self._pending), final=True)

    def _release(self, cut: int, *, final: bool) -> StreamStep:
        offset = len(self._context)
        verdict = self.guard.check(self._context + self._pending, self.stage)
        self._unchecked = 0
        # Detections wholly inside text already sent were handled by an earlier check.
        fresh = [d for d in verdict.detections if d.end > offset]
        if not final:
            for d in fresh:
                if d.start >= offset and d.start - offset < cut < d.end - offset:
                    cut = d.start - offset  # straddles the cut (maybe still arriving): keep it whole for later
            if self.mapping:
                cut = _outside_placeholder(self._pending, cut)
        fired = self._record(fresh)
        if fired is not None and fired.action == "block":
            self.blocked = True
            self._pending = ""
            return StreamStep("", blocked=True, verdict=fired)
        if cut <= 0:
            return StreamStep("", verdict=fired)
        segment = self._pending[:cut]
        inside = [
            d.model_copy(update={"start": d.start - offset, "end": d.end - offset})
            for d in fresh
            if d.start >= offset and d.end - offset <= cut
        ]
        text = segment
        if inside:
            local = Verdict(flagged=True, action="redact", detections=inside)
            text = self.guard.redact(segment, local, stage=self.stage).text
        if self.mapping:
            text = restore(text, self.mapping)
        keep = self.limits.context_chars
        self._context = (self._context + segment)[-keep:] if keep else ""
        self._pending = self._pending[cut:]
        self._scanned = max(0, self._scanned - cut)
        return StreamStep(text, verdict=fired)

    def _record(self, fresh: list[Detection]) -> Verdict | None:
        if not fresh:
            return None
        policies = self.guard._policies()
        action: Action = "allow"
        for d in fresh:
            if _SEVERITY[policies[d.type].action] > _SEVERITY[action]:
                action = policies[d.type].action
        fired = Verdict(flagged=action != "allow", action=action, detections=fresh)
        for decision in self.guard.decisions(fired, self.stage):
            key = (decision.type, decision.detail)
            if key not in self.decisions or decision.score > self.decisions[key].score:
                self.decisions[key] = decision
        return fired


def _outside_placeholder(text: str, cut: int) -> int:
    """Move ``cut`` back to the ``<`` of a placeholder it would split."""
    opening = text.rfind("<", max(0, cut - _PLACEHOLDER_MAX), cut)
    if opening >= 0 and text.find(">", opening, cut) < 0:
        return opening
    return cut
