"""Persistence: SQLite by default or PostgreSQL, and the batched request recorder."""

from goldenpath.store._recorder import RequestRecorder
from goldenpath.store._store import RequestRecord, Store, StoredKey

__all__ = ["RequestRecord", "RequestRecorder", "Store", "StoredKey"]
