"""Guards: prompt-injection, PII and secret detectors, and the policy pipeline that runs them."""

from goldenpath.guard._injection import InjectionDetector
from goldenpath.guard._pii import PIIDetector
from goldenpath.guard._pipeline import (
    Guard,
    GuardPolicy,
    InjectionPolicy,
    PIIPolicy,
    Redaction,
    SecretsPolicy,
    redact,
    restore,
)
from goldenpath.guard._secrets import SecretsDetector
from goldenpath.guard._train import train, train_command
from goldenpath.guard._types import Action, Detection, Stage, Verdict

__all__ = [
    "Action",
    "Detection",
    "Guard",
    "GuardPolicy",
    "InjectionDetector",
    "InjectionPolicy",
    "PIIDetector",
    "PIIPolicy",
    "Redaction",
    "SecretsDetector",
    "SecretsPolicy",
    "Stage",
    "Verdict",
    "redact",
    "restore",
    "train",
    "train_command",
]
