"""The allow/deny matrix of the example policies: keys in several tenants and groups against every
action and several resources."""

from __future__ import annotations

import pytest

from goldenpath.policy import Action, PolicyEngine
from goldenpath.tenancy import Principal
from tests.policy.conftest import CONTEXT, key

KEYS = {
    "alice": key("alice", "acme", ("eng",)),
    "bob": key("bob", "acme"),
    "carol": key("carol", "globex", ("eng", "finance")),
    "dave": key("dave", "globex", ("sre",)),  # sre is inside ops (examples/policies/entities.json)
    "erin": key("erin", "acme", ("eng", "suspended")),
    "oscar": key("oscar", "acme", ("ops",)),
    "root": key("root", "default", admin=True),
}

# (action, resource) -> the keys allowed; every other key is denied.
ALLOWED: dict[tuple[Action, str], set[str]] = {
    ("invoke_model", "small"): {"alice", "bob", "oscar", "root"},
    ("invoke_model", "gpt-large"): {"alice", "carol", "root"},
    ("invoke_model", "unlisted"): {"root"},
    ("call_tool", "shell"): {"dave", "oscar"},
    ("call_tool", "web_search"): {"alice", "bob", "carol", "dave", "oscar", "root"},
    ("retrieve", "handbook"): {"alice", "bob", "oscar"},
    ("retrieve", "finance-reports"): {"carol"},
    ("admin", "api"): {"root"},
}

CASES = [(who, action, resource) for (action, resource) in ALLOWED for who in KEYS]


@pytest.mark.parametrize(("who", "action", "resource"), CASES, ids=[f"{w}-{a}-{r}" for w, a, r in CASES])
def test_matrix(examples: PolicyEngine, who: str, action: Action, resource: str) -> None:
    decision = examples.authorize(KEYS[who], action, resource, CONTEXT[action])
    assert decision.allowed == (who in ALLOWED[(action, resource)]), decision.message
    assert decision.errors == ()
    if decision.allowed:
        assert decision.reasons, "an allow names the permits that matched"


@pytest.mark.parametrize(
    ("who", "action", "resource", "reasons"),
    [
        ("alice", "invoke_model", "small", ("acme-small",)),
        ("root", "invoke_model", "gpt-large", ("admins-any-model",)),
        ("oscar", "call_tool", "shell", ("tools-allowed",)),
        ("root", "admin", "api", ("admin-keys-only",)),
    ],
)
def test_allow_names_the_permit(
    examples: PolicyEngine, who: str, action: Action, resource: str, reasons: tuple[str]
) -> None:
    decision = examples.authorize(KEYS[who], action, resource, CONTEXT[action])
    assert decision.allowed
    assert decision.reasons == reasons
    assert repr(reasons[0]) in decision.message


@pytest.mark.parametrize(
    ("who", "action", "resource", "forbid"),
    [
        ("alice", "call_tool", "shell", "shell-ops-only"),
        ("root", "call_tool", "shell", "shell-ops-only"),
        # erin's tenant and group both permit these; the forbid wins.
        ("erin", "invoke_model", "small", "suspended"),
        ("erin", "invoke_model", "gpt-large", "suspended"),
    ],
)
def test_forbid_overrides_permit_and_is_named(
    examples: PolicyEngine, who: str, action: Action, resource: str, forbid: str
) -> None:
    decision = examples.authorize(KEYS[who], action, resource, CONTEXT[action])
    assert not decision.allowed
    assert decision.reasons == (forbid,)
    assert f"denied by policy {forbid!r}" in decision.message


def test_no_permit_says_so(examples: PolicyEngine) -> None:
    decision = examples.authorize(KEYS["bob"], "invoke_model", "gpt-large", CONTEXT["invoke_model"])
    assert not decision.allowed
    assert decision.reasons == ()
    assert "no policy permits key 'bob'" in decision.message
    assert "'gpt-large'" in decision.message


def test_is_admin_attribute_not_the_key_id(examples: PolicyEngine) -> None:
    """The admin permit reads ``principal.is_admin``; a key merely named like the admin key gets nothing."""
    impostor = Principal(key_id="admin", tenant="default", name="admin", is_admin=False)
    assert not examples.authorize(impostor, "admin", "api", CONTEXT["admin"]).allowed
