"""Persistence behind one interface, on SQLAlchemy Core: SQLite by default, PostgreSQL by URL.

Every method is synchronous and meant to run off the event loop (a worker thread), never on the
request path.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Sequence
from typing import Any

from sqlalchemy import create_engine, event, insert, select, update
from sqlalchemy.engine import Engine

from goldenpath.store._schema import api_keys, metadata, requests


@dataclasses.dataclass(slots=True)
class RequestRecord:
    """One answered (or refused) request."""

    id: str
    ts: float
    endpoint: str
    status: int
    latency_ms: float
    key_id: str | None = None
    tenant: str | None = None
    model: str | None = None
    deployment: str | None = None
    error_type: str | None = None
    stream: bool = False
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_ms: float | None = None
    overhead_ms: float | None = None


@dataclasses.dataclass(slots=True, frozen=True)
class StoredKey:
    id: str
    key_hash: str
    prefix: str
    name: str
    tenant: str
    is_admin: bool
    created_at: float
    revoked_at: float | None


_RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(RequestRecord))
_record_values = operator.attrgetter(*_RECORD_FIELDS)  # much cheaper than dataclasses.asdict


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = create_engine(url, future=True, pool_pre_ping=not url.startswith("sqlite"))
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)

    def migrate(self) -> None:
        metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # API keys
    def put_key(self, key: StoredKey) -> None:
        row = dataclasses.asdict(key)
        with self.engine.begin() as conn:
            existing = conn.execute(select(api_keys.c.id).where(api_keys.c.id == key.id)).first()
            if existing:
                conn.execute(update(api_keys).where(api_keys.c.id == key.id).values(**row))
            else:
                conn.execute(insert(api_keys).values(**row))

    def get_key(self, key_id: str) -> StoredKey | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).mappings().first()
        return StoredKey(**row) if row else None

    def active_keys(self) -> list[StoredKey]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(api_keys).where(api_keys.c.revoked_at.is_(None))).mappings().all()
        return [StoredKey(**r) for r in rows]

    # Request records
    def insert_requests(self, records: Sequence[RequestRecord]) -> None:
        if not records:
            return
        rows = [dict(zip(_RECORD_FIELDS, _record_values(r), strict=True)) for r in records]
        with self.engine.begin() as conn:
            conn.execute(insert(requests), rows)

    def latest_requests(self, limit: int = 20, after_ts: float | None = None) -> list[RequestRecord]:
        query = select(requests)
        if after_ts is not None:
            query = query.where(requests.c.ts > after_ts).order_by(requests.c.ts.asc())
        else:
            query = query.order_by(requests.c.ts.desc())
        with self.engine.connect() as conn:
            rows = conn.execute(query.limit(limit)).mappings().all()
        records = [RequestRecord(**r) for r in rows]
        return records if after_ts is not None else records[::-1]
