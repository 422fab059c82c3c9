"""The entity model goldenpath authorizes with: names shared by the loader and the engine."""

from __future__ import annotations

from typing import Literal, Protocol, get_args

Action = Literal["invoke_model", "retrieve", "call_tool", "admin"]
ACTIONS: tuple[Action, ...] = get_args(Action)

KEY_TYPE = "Goldenpath::Key"
GROUP_TYPE = "Goldenpath::Group"
TENANT_TYPE = "Goldenpath::Tenant"
ACTION_TYPE = "Goldenpath::Action"

# The resource type each action applies to; the resource id is the alias, collection, tool or "api".
RESOURCE_TYPES: dict[str, str] = {
    "invoke_model": "Goldenpath::Model",
    "retrieve": "Goldenpath::Collection",
    "call_tool": "Goldenpath::Tool",
    "admin": "Goldenpath::Admin",
}
ADMIN_RESOURCE = "api"


class Caller(Protocol):
    """What authorization reads of the caller; ``goldenpath.tenancy.Principal`` has it."""

    @property
    def key_id(self) -> str: ...
    @property
    def tenant(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def is_admin(self) -> bool: ...
    @property
    def groups(self) -> frozenset[str]: ...


def key_entity(caller: Caller) -> dict[str, object]:
    """The caller's key as a Cedar entity: member of its groups and of its tenant."""
    parents = [{"type": GROUP_TYPE, "id": g} for g in sorted(caller.groups)]
    parents.append({"type": TENANT_TYPE, "id": caller.tenant})
    return {
        "uid": {"type": KEY_TYPE, "id": caller.key_id},
        "attrs": {"tenant": caller.tenant, "name": caller.name, "is_admin": caller.is_admin},
        "parents": parents,
    }
