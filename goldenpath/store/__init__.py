"""Persistence: SQLite by default or PostgreSQL (Alembic migrations), and the batched request recorder."""

from goldenpath.store._recorder import RequestRecorder
from goldenpath.store._store import (
    BudgetPeriod,
    RequestRecord,
    Store,
    StoredKey,
    StoreError,
    Tenant,
    UsageRow,
    normalize_url,
)

__all__ = [
    "BudgetPeriod",
    "RequestRecord",
    "RequestRecorder",
    "Store",
    "StoreError",
    "StoredKey",
    "Tenant",
    "UsageRow",
    "normalize_url",
]
