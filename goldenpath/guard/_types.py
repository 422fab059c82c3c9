"""What detectors return and what the guard decides. No raw secret or PII value is ever stored here."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Action = Literal["allow", "redact", "block", "flag"]
Stage = Literal["input", "context", "output"]
DetectionType = Literal["prompt_injection", "pii", "secret", "toxicity", "deny_list", "topic"]


class Detection(BaseModel):
    """One finding: a span of the checked text (``start``..``end``) and a description of it.

    ``detail`` names the kind (``EMAIL_ADDRESS``, ``AWS Access Key``, ``ignore_previous_instructions``,
    ``terms[2]`` of a deny list, the description of a topic) and never the matched value.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: DetectionType
    score: float = Field(ge=0.0, le=1.0)
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    detail: str


class Verdict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    flagged: bool
    action: Action
    detections: list[Detection]
    redacted: str | None = None  # the text after redaction, when the action is "redact"


class Decision(BaseModel):
    """What one detector decided about one text, as recorded: no span, no value, nothing from the text."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stage: Stage
    type: DetectionType
    action: Action  # the action the policy gives this detector (the verdict takes the most severe)
    score: float
    detail: str
