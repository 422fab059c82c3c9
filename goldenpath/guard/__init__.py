"""Guards: prompt injection, PII, secrets, moderation and topic detectors, the policy pipeline that runs
them at the input, context and output stages, and incremental checking of streamed answers."""

from goldenpath.guard._injection import InjectionDetector
from goldenpath.guard._moderation import DenyListDetector, ToxicityDetector, export_toxicity
from goldenpath.guard._pii import PIIDetector
from goldenpath.guard._pipeline import (
    DenyListPolicy,
    Guard,
    GuardPolicy,
    InjectionPolicy,
    PIIPolicy,
    Redaction,
    SecretsPolicy,
    StreamPolicy,
    TopicPolicy,
    ToxicityPolicy,
    redact,
    restore,
)
from goldenpath.guard._secrets import SecretsDetector
from goldenpath.guard._stream import StreamGuard, StreamStep
from goldenpath.guard._topics import TopicDetector
from goldenpath.guard._train import train, train_command
from goldenpath.guard._types import Action, Decision, Detection, Stage, Verdict

__all__ = [
    "Action",
    "Decision",
    "DenyListDetector",
    "DenyListPolicy",
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
    "StreamGuard",
    "StreamPolicy",
    "StreamStep",
    "TopicDetector",
    "TopicPolicy",
    "ToxicityDetector",
    "ToxicityPolicy",
    "Verdict",
    "export_toxicity",
    "redact",
    "restore",
    "train",
    "train_command",
]
