"""The guard pipeline: a policy, the detectors it names, one verdict per checked text."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from goldenpath.guard._features import make_embedder
from goldenpath.guard._injection import DOC_THRESHOLD, InjectionDetector
from goldenpath.guard._moderation import DenyListDetector, ToxicityDetector
from goldenpath.guard._pii import ENTITIES, PIIDetector
from goldenpath.guard._secrets import SecretsDetector
from goldenpath.guard._topics import TopicDetector
from goldenpath.guard._types import Action, Decision, Detection, DetectionType, Stage, Verdict
from goldenpath.providers.onnx_embeddings import OnnxEmbedder

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
    # Context and output texts are documents, scored in windows by the n-gram head (score_document).
    document_threshold: float = Field(default=DOC_THRESHOLD, ge=0.0, le=1.0)


class PIIPolicy(_DetectorPolicy):
    action: Action = "redact"
    style: Style = "placeholder"
    min_score: float = Field(default=0.4, ge=0.0, le=1.0)  # Presidio scores: phone 0.4, IP 0.6, checksums 1.0
    entities: tuple[str, ...] = ENTITIES
    # Placeholders put in at the input stage are replaced by the original values in the response.
    restore: bool = True


class SecretsPolicy(_DetectorPolicy):
    action: Action = "redact"
    style: Style = "redact"
    min_score: float = Field(default=0.5, ge=0.0, le=1.0)  # 0.99 known token formats, 0.6 high entropy
    entropy: bool = True


class ToxicityPolicy(_DetectorPolicy):
    """Offensive language (alt-profanity-check's model); by default answers only."""

    action: Action = "block"
    stages: frozenset[Stage] = frozenset({"output"})
    threshold: float = Field(default=0.9, ge=0.0, le=1.0)


class DenyListPolicy(_DetectorPolicy):
    """Terms (whole words, case-insensitive) and regular expressions; runs only when it lists some."""

    action: Action = "block"
    terms: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()

    @field_validator("terms")
    @classmethod
    def _terms(cls, terms: tuple[str, ...]) -> tuple[str, ...]:
        for i, term in enumerate(terms):
            if not term.strip():
                raise ValueError(f"terms[{i}] is empty")
        return terms

    @field_validator("patterns")
    @classmethod
    def _patterns(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for i, pattern in enumerate(patterns):
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"patterns[{i}] is not a valid regular expression: {exc}") from None
            if compiled.match(""):
                raise ValueError(f"patterns[{i}] matches the empty string")
        return patterns


class TopicPolicy(_DetectorPolicy):
    """Topics by MiniLM similarity; runs (and loads MiniLM) only when it lists some.

    ``deny``: a text about one of these fires. ``allow``: a text about none of these fires.
    """

    action: Action = "block"
    stages: frozenset[Stage] = frozenset({"input"})
    deny: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    threshold: float = Field(default=0.3, ge=-1.0, le=1.0)  # cosine similarity

    @field_validator("deny", "allow")
    @classmethod
    def _topics(cls, topics: tuple[str, ...]) -> tuple[str, ...]:
        for i, topic in enumerate(topics):
            if not topic.strip():
                raise ValueError(f"topic {i} is empty")
        return topics


class StreamPolicy(BaseModel):
    """How a streamed answer is checked: see ``StreamGuard``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hold_chars: int = Field(default=64, ge=0, le=4096)  # never sent until this much text follows it
    check_chars: int = Field(default=200, ge=1, le=65536)  # check at least every this many new characters
    context_chars: int = Field(default=300, ge=0, le=65536)  # already-sent text re-read with the new text


class GuardPolicy(BaseModel):
    """Which detectors run at which stage, their thresholds, and the action when they fire."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    injection: InjectionPolicy = InjectionPolicy()
    pii: PIIPolicy = PIIPolicy()
    secrets: SecretsPolicy = SecretsPolicy()
    toxicity: ToxicityPolicy = ToxicityPolicy()
    deny_list: DenyListPolicy = DenyListPolicy()
    topics: TopicPolicy = TopicPolicy()
    stream: StreamPolicy = StreamPolicy()


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
    if detection.type not in ("pii", "secret"):
        return detection.type.upper()  # a deny-list entry or a topic: name the kind, not the policy entry
    return re.sub(r"[^A-Z0-9]+", "_", detection.detail.upper()).strip("_") or detection.type.upper()


def _mask(value: str) -> str:
    keep = 4 if len(value) >= 12 else 0
    head = "".join("*" if c.isalnum() else c for c in value[: len(value) - keep])
    return head + value[len(value) - keep :]


def redact(
    text: str,
    detections: Iterable[Detection],
    style: Style | Mapping[DetectionType, Style] = "placeholder",
    mapping: Mapping[str, str] | None = None,
) -> Redaction:
    """Replace each detected span: ``<EMAIL_ADDRESS>`` (redact), ``****-****-****-1111`` (mask), or
    ``<EMAIL_ADDRESS_1>`` (placeholder; equal values share one, restorable with the mapping).
    ``style`` may differ per detection type. Overlapping spans: the first (then longest) wins.
    Whole-text detections (injection) are skipped. ``mapping``: placeholders already given out (by
    other messages of the same request); their values keep their placeholder and numbering goes on,
    and the returned mapping includes them."""
    spans = sorted((d for d in detections if d.type != "prompt_injection"), key=lambda d: (d.start, -d.end))
    parts: list[str] = []
    mapping = dict(mapping or {})
    by_value: dict[tuple[str, str], str] = {}
    counters: dict[str, int] = {}
    for placeholder, value in mapping.items():
        label, _, number = placeholder[1:-1].rpartition("_")
        by_value[(label, value)] = placeholder
        counters[label] = max(counters.get(label, 0), int(number))
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
    Detectors a policy leaves off are not built; the topic detector loads MiniLM on first use
    (or ``warm``), sharing the injection detector's model when there is one.
    """

    def __init__(
        self,
        policy: GuardPolicy | None = None,
        *,
        injection: InjectionDetector | None = None,
        pii: PIIDetector | None = None,
        secrets: SecretsDetector | None = None,
        toxicity: ToxicityDetector | None = None,
    ) -> None:
        self.policy = policy or GuardPolicy()
        p = self.policy
        self.injection = injection or (InjectionDetector() if p.injection.enabled else None)
        self.pii = pii or (PIIDetector(p.pii.entities) if p.pii.enabled else None)
        self.secrets = secrets or (SecretsDetector(entropy=p.secrets.entropy) if p.secrets.enabled else None)
        self.toxicity = toxicity or (ToxicityDetector() if p.toxicity.enabled else None)
        listed = p.deny_list.terms or p.deny_list.patterns
        self.deny_list = DenyListDetector(p.deny_list.terms, p.deny_list.patterns) if listed else None
        topics = p.topics.deny or p.topics.allow
        self.topics = TopicDetector(p.topics.deny, p.topics.allow, embedder=self._embedder) if topics else None

    def _embedder(self) -> OnnxEmbedder:
        if self.injection is not None:
            return self.injection._embedder_or_load()
        return make_embedder()

    def _policies(self) -> dict[DetectionType, _DetectorPolicy]:
        p = self.policy
        return {
            "prompt_injection": p.injection,
            "pii": p.pii,
            "secret": p.secrets,
            "toxicity": p.toxicity,
            "deny_list": p.deny_list,
            "topic": p.topics,
        }

    def _runs(self, kind: DetectionType, stage: Stage) -> bool:
        detector = {
            "prompt_injection": self.injection,
            "pii": self.pii,
            "secret": self.secrets,
            "toxicity": self.toxicity,
            "deny_list": self.deny_list,
            "topic": self.topics,
        }[kind]
        policy = self._policies()[kind]
        return detector is not None and policy.enabled and stage in policy.stages

    def runs_at(self, stage: Stage) -> bool:
        """Whether any detector runs at this stage (when none does, the stage can be skipped)."""
        return any(self._runs(kind, stage) for kind in self._policies())

    def warm(self) -> None:
        """Load what would otherwise load on the first request: MiniLM (~0.5 s) and the topic vectors."""
        if self.injection is not None:
            self.injection.warm()
        if self.topics is not None:
            self.topics.warm()

    def check(self, text: str, stage: Stage = "input") -> Verdict:
        p = self.policy
        detections: list[Detection] = []
        if self.secrets is not None and self._runs("secret", stage):
            detections += [d for d in self.secrets.detect(text) if d.score >= p.secrets.min_score]
        if self.pii is not None and self._runs("pii", stage):
            detections += self.pii.detect(text, p.pii.min_score)
        if self.deny_list is not None and self._runs("deny_list", stage):
            detections += self.deny_list.detect(text)
        if self.toxicity is not None and self._runs("toxicity", stage):
            detections += self.toxicity.detect(text, p.toxicity.threshold)
        if self.injection is not None and self._runs("prompt_injection", stage):
            if stage == "input":
                score, reason = self.injection.score(text)
                threshold = p.injection.threshold if p.injection.threshold is not None else self.injection.threshold
            else:
                score, reason = self.injection.score_document(text)
                threshold = p.injection.document_threshold
            if score >= threshold:
                detections.append(
                    Detection(type="prompt_injection", score=round(score, 4), start=0, end=len(text), detail=reason)
                )
        if self.topics is not None and self._runs("topic", stage):
            detections += self.topics.detect(text, p.topics.threshold)
        policies = self._policies()
        action: Action = "allow"
        for d in detections:
            candidate = policies[d.type].action
            if _SEVERITY[candidate] > _SEVERITY[action]:
                action = candidate
        return Verdict(flagged=action != "allow", action=action, detections=sorted(detections, key=lambda d: d.start))

    def decisions(self, verdict: Verdict, stage: Stage) -> list[Decision]:
        """What to record about a verdict: per detection its detector's action, score and kind, no text."""
        policies = self._policies()
        return [
            Decision(stage=stage, type=d.type, action=policies[d.type].action, score=d.score, detail=d.detail)
            for d in verdict.detections
        ]

    def redact(
        self, text: str, verdict: Verdict, mapping: Mapping[str, str] | None = None, *, stage: Stage = "input"
    ) -> Redaction:
        """Apply each redacting detector's style to its own detections (others are left in place).

        PII and secrets use their policy's style; deny-list, toxicity and topic spans become ``<TYPE>``.
        Placeholders are given out at the input stage only (they exist to be restored in the answer);
        at the context and output stages the placeholder style redacts (``<EMAIL_ADDRESS>``).
        ``mapping``: placeholders given out earlier in the same request (see ``redact``).
        """
        p = self.policy

        def style(chosen: Style) -> Style:
            return "redact" if chosen == "placeholder" and stage != "input" else chosen

        styles: dict[DetectionType, Style] = {}
        if p.secrets.action == "redact":
            styles["secret"] = style(p.secrets.style)
        if p.pii.action == "redact":
            styles["pii"] = style(p.pii.style)
        for kind in ("toxicity", "deny_list", "topic"):
            if self._policies()[kind].action == "redact":
                styles[kind] = "redact"
        return redact(text, [d for d in verdict.detections if d.type in styles], styles, mapping)
