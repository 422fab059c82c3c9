"""The example policies under examples/policies, and keys to ask about."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from goldenpath.policy import PolicyConfig, PolicyEngine
from goldenpath.tenancy import Principal

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"

# A valid context for each action under the shipped schema.
CONTEXT: dict[str, dict[str, Any]] = {
    "invoke_model": {"operation": "chat", "stream": False, "estimated_tokens": 1200},
    "retrieve": {},
    "call_tool": {"model": "small"},
    "admin": {"method": "GET", "path": "/admin/keys"},
}


def key(name: str, tenant: str = "acme", groups: tuple[str, ...] = (), *, admin: bool = False) -> Principal:
    return Principal(key_id=f"id-{name}", tenant=tenant, name=name, is_admin=admin, groups=frozenset(groups))


@pytest.fixture
def examples() -> PolicyEngine:
    return PolicyEngine(PolicyConfig(files=[EXAMPLES], entities_file=EXAMPLES / "entities.json"))
