"""The guard pipeline: a policy, the detectors it names, one verdict per checked text."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from goldenpath.guard._injection import InjectionDetector
from goldenpath.guard._pii import ENTITIES, PIIDetector
from goldenpath.guard._secrets import SecretsDetector
from goldenpath.guard._types import Action, Detection, DetectionType, Stage, Verdict

Style = Literal["redact", "mask", "placeholder"]
_SEVERITY: dict[Action, int] = {"allow": 0, "flag": 1, "redact": 2, "block": 3}
ALL_STAGES: frozenset[Stage] = frozenset({"input", "context", "output"})


class _DetectorPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    action: Action
    stages: frozenset[Stage] = ALL_STAGES


class InjectionPolicy(_DetectorPolicy):
    action: Action = "block"
    stages: frozenset[Stage] = frozenset({"input", "context"})
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)  # None: the artifact's own threshold


class PIIPolicy(_DetectorPolicy):
    action: Action = "redact"
    style: Style = "placeholder"
    min_score: float = Field(default=0.4, ge=0.0, le=1.0)  # Presidio scores: phone 0.4, IP 0.6, checksums 1.0
    entities: tuple[str, ...] = ENTITIES


class SecretsPolicy(_DetectorPolicy):
    action: Action = "redact"
    style: Style = "redact"
    min_score: float = Field(default=0.5, ge=0.0, le=1.0)  # 0.99 known token formats, 0.6 high entropy
    entropy: bool = True


class GuardPolicy(BaseModel):
    """Which detectors run at which stage, their thresholds, and the action when they fire."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    injection: InjectionPolicy = InjectionPolicy()
    pii: PIIPolicy = PIIPolicy()
    secrets: SecretsPolicy = SecretsPolicy()


@dataclass(frozen=True, slots=True)
class Redaction:
    """A redacted text and, for placeholders, what each placeholder stood for.

    ``mapping`` holds the original values: keep it in memory for the response only, never record it.
    """

    text: str
    mapping: dict[str, str] = field(default_factory=dict, repr=False)

    def restore(self, text: str) -> str:
        return restore(text, self.mapping)


def _label(detection: Detection) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", detection.detail.upper()).strip("_") or detection.type.upper()


def _mask(value: str) -> str:
    keep = 4 if len(value) >= 12 else 0
    head = "".join("*" if c.isalnum() else c for c in value[: len(value) - keep])
    return head + value[len(value) - keep :]


def redact(
    text: str, detections: Iterable[Detection], style: Style | Mapping[DetectionType, Style] = "placeholder"
) -> Redaction:
    """Replace each detected span: ``<EMAIL_ADDRESS>`` (redact), ``****-****-****-1111`` (mask), or
    ``<EMAIL_ADDRESS_1>`` (placeholder; equal values share one, restorable with the mapping).
    ``style`` may differ per detection type. Overlapping spans: the first (then longest) wins.
    Whole-text detections (injection) are skipped."""
    spans = sorted((d for d in detections if d.type != "prompt_injection"), key=lambda d: (d.start, -d.end))
    parts: list[str] = []
    mapping: dict[str, str] = {}
    by_value: dict[tuple[str, str], str] = {}
    counters: dict[str, int] = {}
    cursor = 0
    for d in spans:
        if d.start < cursor or d.end > len(text):
            continue
        value = text[d.start : d.end]
        label = _label(d)
        chosen = style if isinstance(style, str) else style.get(d.type, "placeholder")
        if chosen == "redact":
            replacement = f"<{label}>"
        elif chosen == "mask":
            replacement = _mask(value)
        else:
            replacement = by_value.get((label, value), "")
            if not replacement:
                counters[label] = counters.get(label, 0) + 1
                replacement = f"<{label}_{counters[label]}>"
                by_value[(label, value)] = replacement
                mapping[replacement] = value
        parts.append(text[cursor : d.start])
        parts.append(replacement)
        cursor = d.end
    parts.append(text[cursor:])
    return Redaction("".join(parts), mapping)


def restore(text: str, mapping: dict[str, str]) -> str:
    """Put the original values back where a response repeats the placeholders."""
    if not mapping:
        return text
    pattern = re.compile("|".join(re.escape(p) for p in sorted(mapping, key=len, reverse=True)))
    return pattern.sub(lambda m: mapping[m.group(0)], text)


class Guard:
    """Runs the detectors a policy enables for a stage and decides one action.

    The verdict's action is the most severe action among the detectors that fired
    (block > redact > flag > allow); ``flagged`` is true when that is not ``allow``.
    """

    def __init__(
        self,
        policy: GuardPolicy | None = None,
        *,
        injection: InjectionDetector | None = None,
        pii: PIIDetector | None = None,
        secrets: SecretsDetector | None = None,
    ) -> None:
        self.policy = policy or GuardPolicy()
        p = self.policy
        self.injection = injection or (InjectionDetector() if p.injection.enabled else None)
        self.pii = pii or (PIIDetector(p.pii.entities) if p.pii.enabled else None)
        self.secrets = secrets or (SecretsDetector(entropy=p.secrets.entropy) if p.secrets.enabled else None)

    def _actions(self) -> dict[DetectionType, _DetectorPolicy]:
        return {"prompt_injection": self.policy.injection, "pii": self.policy.pii, "secret": self.policy.secrets}

    def check(self, text: str, stage: Stage = "input") -> Verdict:
        p = self.policy
        detections: list[Detection] = []
        if self.secrets is not None and p.secrets.enabled and stage in p.secrets.stages:
            detections += [d for d in self.secrets.detect(text) if d.score >= p.secrets.min_score]
        if self.pii is not None and p.pii.enabled and stage in p.pii.stages:
            detections += self.pii.detect(text, p.pii.min_score)
        if self.injection is not None and p.injection.enabled and stage in p.injection.stages:
            score, reason = self.injection.score(text)
            threshold = p.injection.threshold if p.injection.threshold is not None else self.injection.threshold
            if score >= threshold:
                detections.append(
                    Detection(type="prompt_injection", score=round(score, 4), start=0, end=len(text), detail=reason)
                )
        policies = self._actions()
        action: Action = "allow"
        for d in detections:
            candidate = policies[d.type].action
            if _SEVERITY[candidate] > _SEVERITY[action]:
                action = candidate
        return Verdict(flagged=action != "allow", action=action, detections=sorted(detections, key=lambda d: d.start))

    def redact(self, text: str, verdict: Verdict) -> Redaction:
        """Apply each redacting detector's style to its own detections (others are left in place)."""
        p = self.policy
        styles: dict[DetectionType, Style] = {}
        if p.secrets.action == "redact":
            styles["secret"] = p.secrets.style
        if p.pii.action == "redact":
            styles["pii"] = p.pii.style
        return redact(text, [d for d in verdict.detections if d.type in styles], styles)
