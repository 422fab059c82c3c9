"""Tenancy: tenants, principals and API keys (hashed at rest), limits and budgets."""

from goldenpath.tenancy._governor import Admission, Decision, Governor, MemoryGovernor, RedisGovernor
from goldenpath.tenancy._keys import (
    ADMIN_KEY_ID,
    DEFAULT_TENANT,
    Budget,
    KeyRing,
    NewKey,
    Principal,
    generate_key,
    load_server_secret,
    principal_for,
)
from goldenpath.tenancy._periods import period_bounds, utc_day

__all__ = [
    "ADMIN_KEY_ID",
    "DEFAULT_TENANT",
    "Admission",
    "Budget",
    "Decision",
    "Governor",
    "KeyRing",
    "MemoryGovernor",
    "NewKey",
    "Principal",
    "RedisGovernor",
    "generate_key",
    "load_server_secret",
    "period_bounds",
    "principal_for",
    "utc_day",
]
