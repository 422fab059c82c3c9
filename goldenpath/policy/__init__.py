"""Policy-as-code: Cedar decides who may invoke which model, retrieve from which collection, call
which tool, and use the admin API. Off unless ``policy.files`` names policies (see docs/policy.md)."""

from goldenpath.policy._config import DEFAULT_SCHEMA, PolicyConfig
from goldenpath.policy._engine import Decision, PolicyEngine, load_policy_engine
from goldenpath.policy._load import PolicyError
from goldenpath.policy._model import ACTIONS, ADMIN_RESOURCE, Action, Caller

__all__ = [
    "ACTIONS",
    "ADMIN_RESOURCE",
    "DEFAULT_SCHEMA",
    "Action",
    "Caller",
    "Decision",
    "PolicyConfig",
    "PolicyEngine",
    "PolicyError",
    "load_policy_engine",
]
