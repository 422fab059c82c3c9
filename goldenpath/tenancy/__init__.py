"""Tenancy: tenants, principals and API keys (hashed at rest), limits and budgets."""

from goldenpath.tenancy._admin import (
    KeySpec,
    TenantSpec,
    create_key,
    create_tenant,
    key_view,
    parse_duration,
    tenant_view,
    usage_view,
)
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
    "KeySpec",
    "MemoryGovernor",
    "NewKey",
    "Principal",
    "RedisGovernor",
    "TenantSpec",
    "create_key",
    "create_tenant",
    "generate_key",
    "key_view",
    "load_server_secret",
    "parse_duration",
    "period_bounds",
    "principal_for",
    "tenant_view",
    "usage_view",
    "utc_day",
]
