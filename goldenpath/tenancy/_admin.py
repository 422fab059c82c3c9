"""Admin operations shared by the ``/admin`` API and the CLI, with their input validation."""

from __future__ import annotations

import re
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from goldenpath.store import BudgetPeriod, Store, StoredKey, Tenant, UsageRow
from goldenpath.tenancy._keys import KeyRing, NewKey

MAX_LIMIT = 2**31 - 1  # what the store's integer columns hold
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_GROUP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, None: 1}


def parse_duration(text: str) -> float:
    """``90d``, ``12h``, ``30m``, ``45s`` or plain seconds."""
    m = _DURATION.match(text)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration; use e.g. 90d, 12h, 30m or 3600")
    return float(m.group(1)) * _UNITS[m.group(2)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TenantSpec(_Input):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    rpm: int | None = Field(default=None, ge=1, le=MAX_LIMIT)
    tpm: int | None = Field(default=None, ge=1, le=MAX_LIMIT)
    budget_usd: float | None = Field(default=None, gt=0)
    budget_period: BudgetPeriod = "month"
    budget_hard: bool = True


class KeySpec(_Input):
    tenant: str = Field(min_length=1)
    name: str = Field(min_length=1, max_length=200)
    models: list[str] | None = Field(default=None, description="Aliases this key may call; all if unset.")
    rpm: int | None = Field(default=None, ge=1, le=MAX_LIMIT)
    tpm: int | None = Field(default=None, ge=1, le=MAX_LIMIT)
    budget_usd: float | None = Field(default=None, gt=0)
    budget_period: BudgetPeriod = "month"
    budget_hard: bool = True
    expires_in: str | None = Field(default=None, description="e.g. 90d, 12h; never if unset.")
    admin: bool = False
    groups: list[str] | None = Field(
        default=None,
        description="Groups of the key's principal (document access, Cedar); replaces them when given, kept if unset.",
    )

    @field_validator("groups")
    @classmethod
    def _group_names(cls, v: list[str] | None) -> list[str] | None:
        for g in v or []:
            if not _GROUP.match(g):
                raise ValueError(f"group {g!r} must be 1-100 letters, digits, '.', '_', '-' or ':'")
        return v

    @field_validator("expires_in")
    @classmethod
    def _duration(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v


def create_tenant(store: Store, spec: TenantSpec) -> Tenant:
    tenant = Tenant(
        name=spec.name,
        created_at=time.time(),
        rpm=spec.rpm,
        tpm=spec.tpm,
        budget_usd=spec.budget_usd,
        budget_period=spec.budget_period if spec.budget_usd is not None else None,
        budget_hard=spec.budget_hard,
    )
    store.create_tenant(tenant)
    return tenant


def create_key(ring: KeyRing, spec: KeySpec, known_models: set[str] | None = None) -> NewKey:
    if known_models is not None and spec.models is not None:
        unknown = sorted(set(spec.models) - known_models)
        if unknown:
            known = ", ".join(sorted(known_models))
            raise ValueError(f"unknown model alias(es): {', '.join(unknown)}; configured: {known}")
    return ring.create_key(
        tenant=spec.tenant,
        name=spec.name,
        models=spec.models,
        rpm=spec.rpm,
        tpm=spec.tpm,
        budget_usd=spec.budget_usd,
        budget_period=spec.budget_period,
        budget_hard=spec.budget_hard,
        expires_in_s=parse_duration(spec.expires_in) if spec.expires_in else None,
        is_admin=spec.admin,
        groups=spec.groups,
    )


def key_view(key: StoredKey) -> dict[str, Any]:
    """A key as shown after creation: never its hash, only its prefix."""
    return {
        "id": key.id,
        "prefix": key.prefix,
        "name": key.name,
        "tenant": key.tenant,
        "admin": key.is_admin,
        "models": key.models,
        "rpm": key.rpm,
        "tpm": key.tpm,
        "budget_usd": key.budget_usd,
        "budget_period": key.budget_period,
        "budget_hard": key.budget_hard,
        "expires_at": key.expires_at,
        "created_at": key.created_at,
        "revoked_at": key.revoked_at,
    }


def tenant_view(t: Tenant) -> dict[str, Any]:
    return {
        "name": t.name,
        "created_at": t.created_at,
        "rpm": t.rpm,
        "tpm": t.tpm,
        "budget_usd": t.budget_usd,
        "budget_period": t.budget_period,
        "budget_hard": t.budget_hard,
    }


def usage_view(rows: list[UsageRow]) -> list[dict[str, Any]]:
    return [
        {
            **r.group,
            "requests": r.requests,
            "succeeded": r.succeeded,
            "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens,
            "cost_usd": round(r.cost_usd, 6),
            "cost_per_success_usd": None if r.cost_per_success_usd is None else round(r.cost_per_success_usd, 8),
        }
        for r in rows
    ]
