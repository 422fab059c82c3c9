"""Persistence behind one interface, on SQLAlchemy Core: SQLite by default, PostgreSQL by URL.

Every method is synchronous and meant to run off the event loop (a worker thread, or the CLI),
never on the request path. The schema is created and upgraded by Alembic migrations.
"""

from __future__ import annotations

import dataclasses
import operator
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, Integer, create_engine, event, func, insert, inspect, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from goldenpath.store._schema import api_keys, principals, requests, state_version, tenants

BudgetPeriod = Literal["day", "week", "month"]


class StoreError(Exception):
    """A store operation was refused (e.g. a duplicate name); the message says why."""


@dataclasses.dataclass(slots=True)
class RequestRecord:
    """One answered (or refused) request."""

    id: str
    ts: float
    day: str
    endpoint: str
    status: int
    latency_ms: float
    key_id: str | None = None
    tenant: str | None = None
    model: str | None = None
    deployment: str | None = None
    error_type: str | None = None
    stream: bool = False
    cache: str | None = None
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    ttft_ms: float | None = None
    overhead_ms: float | None = None
    decisions: list[dict[str, Any]] | None = None  # guard and policy decisions, without the checked text


@dataclasses.dataclass(slots=True, frozen=True)
class Tenant:
    name: str
    created_at: float
    rpm: int | None = None
    tpm: int | None = None
    budget_usd: float | None = None
    budget_period: BudgetPeriod | None = None
    budget_hard: bool = True


@dataclasses.dataclass(slots=True, frozen=True)
class StoredKey:
    id: str
    key_hash: str
    prefix: str
    name: str
    tenant: str
    created_at: float
    is_admin: bool = False
    principal_id: str | None = None
    models: list[str] | None = None
    rpm: int | None = None
    tpm: int | None = None
    budget_usd: float | None = None
    budget_period: BudgetPeriod | None = None
    budget_hard: bool = True
    expires_at: float | None = None
    revoked_at: float | None = None


@dataclasses.dataclass(slots=True, frozen=True)
class UsageRow:
    group: dict[str, str]
    requests: int
    succeeded: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float

    @property
    def cost_per_success_usd(self) -> float | None:
        return self.cost_usd / self.succeeded if self.succeeded else None


_RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(RequestRecord))
_record_values = operator.attrgetter(*_RECORD_FIELDS)  # much cheaper than dataclasses.asdict
_USAGE_GROUPS = {
    "model": requests.c.model,
    "day": requests.c.day,
    "key": requests.c.key_id,
    "tenant": requests.c.tenant,
    "deployment": requests.c.deployment,
}
MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, open transactions, so that DDL (migrations) is
    # transactional too: a failed migration leaves the file as it was (SQLAlchemy's documented recipe).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def normalize_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (SQLAlchemy would otherwise look for psycopg2)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


class Store:
    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.engine: Engine = create_engine(self.url, pool_pre_ping=not self.url.startswith("sqlite"))
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))

    @property
    def _safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def migrate(self) -> None:
        """Bring the schema to the newest migration (safe to run from several processes on PostgreSQL)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727274)")  # one migrator at a time
            tables = set(inspect(conn).get_table_names())
            if "alembic_version" not in tables and tables & {"api_keys", "requests"}:
                raise StoreError(
                    f"{self._safe_url} holds goldenpath tables without a "
                    "migration history (made by a pre-release build); move that database aside and start again"
                )
            cfg.attributes["connection"] = conn
            try:
                command.upgrade(cfg, "head")
            except SQLAlchemyError as exc:
                reason = getattr(exc, "orig", None) or exc
                raise StoreError(f"cannot migrate {self._safe_url}: {reason}") from exc
            if conn.execute(select(state_version.c.version)).first() is None:
                conn.execute(insert(state_version).values(id=1, version=1))

    def close(self) -> None:
        self.engine.dispose()

    # change tracking

    @staticmethod
    def _bump(conn: Connection) -> None:
        conn.execute(update(state_version).where(state_version.c.id == 1).values(version=state_version.c.version + 1))

    def version(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(state_version.c.version)).scalar_one())

    # tenants and principals

    def create_tenant(self, tenant: Tenant) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(tenants).values(**dataclasses.asdict(tenant)))
                self._bump(conn)
        except IntegrityError:
            raise StoreError(f"tenant {tenant.name!r} already exists") from None

    def ensure_tenant(self, name: str, now: float) -> None:
        with self.engine.begin() as conn:
            if conn.execute(select(tenants.c.name).where(tenants.c.name == name)).first() is None:
                conn.execute(insert(tenants).values(name=name, created_at=now, budget_hard=True))
                self._bump(conn)

    def get_tenant(self, name: str) -> Tenant | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(tenants).where(tenants.c.name == name)).mappings().first()
        return Tenant(**row) if row else None

    def list_tenants(self) -> list[Tenant]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(tenants).order_by(tenants.c.name)).mappings().all()
        return [Tenant(**r) for r in rows]

    def ensure_principal(self, tenant: str, name: str, kind: str, now: float, groups: list[str] | None = None) -> str:
        """The id of the tenant's principal of that name, created if new; ``groups`` replaces its groups when given."""
        with self.engine.begin() as conn:
            found = conn.execute(
                select(principals.c.id).where(principals.c.tenant == tenant, principals.c.name == name)
            ).first()
            if found:
                pid = str(found[0])
                if groups is not None:
                    conn.execute(update(principals).where(principals.c.id == pid).values(groups=sorted(set(groups))))
                    self._bump(conn)
                return pid
            pid = "pr_" + uuid.uuid4().hex[:16]
            conn.execute(
                insert(principals).values(
                    id=pid, tenant=tenant, name=name, kind=kind, groups=sorted(set(groups or [])), created_at=now
                )
            )
            return pid

    def principal_groups(self) -> dict[str, list[str]]:
        """Every principal's groups, by principal id."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(principals.c.id, principals.c.groups)).all()
        return {str(pid): list(groups or []) for pid, groups in rows}

    # API keys

    def put_key(self, key: StoredKey) -> None:
        row = dataclasses.asdict(key)
        with self.engine.begin() as conn:
            existing = conn.execute(select(api_keys.c.id).where(api_keys.c.id == key.id)).first()
            if existing:
                conn.execute(update(api_keys).where(api_keys.c.id == key.id).values(**row))
            else:
                conn.execute(insert(api_keys).values(**row))
            self._bump(conn)

    def get_key(self, key_id: str) -> StoredKey | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).mappings().first()
        return StoredKey(**row) if row else None

    def list_keys(self, tenant: str | None = None, *, include_revoked: bool = False) -> list[StoredKey]:
        query = select(api_keys).order_by(api_keys.c.tenant, api_keys.c.created_at)
        if tenant is not None:
            query = query.where(api_keys.c.tenant == tenant)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_at.is_(None))
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [StoredKey(**r) for r in rows]

    def revoke_key(self, key_id: str, now: float) -> bool:
        with self.engine.begin() as conn:
            done = conn.execute(
                update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None)).values(revoked_at=now)
            )
            self._bump(conn)
        return done.rowcount > 0

    def replace_key_hash(self, key_id: str, key_hash: str, prefix: str) -> bool:
        with self.engine.begin() as conn:
            done = conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(key_hash=key_hash, prefix=prefix)
            )
            self._bump(conn)
        return done.rowcount > 0

    # request records and usage

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

    def usage(
        self,
        *,
        tenant: str | None = None,
        by: Iterable[str] = (),
        since_ts: float | None = None,
        until_ts: float | None = None,
    ) -> list[UsageRow]:
        names = list(by)
        unknown = [n for n in names if n not in _USAGE_GROUPS]
        if unknown:
            raise StoreError(f"cannot group usage by {', '.join(unknown)}; choose from {', '.join(_USAGE_GROUPS)}")
        cols = [_USAGE_GROUPS[n] for n in names]
        ok = (requests.c.status < 400).cast(Integer)
        query = select(
            *cols,
            func.count(),
            func.coalesce(func.sum(ok), 0),
            func.coalesce(func.sum(requests.c.prompt_tokens), 0),
            func.coalesce(func.sum(requests.c.completion_tokens), 0),
            func.coalesce(func.sum(requests.c.cost_usd), 0.0),
        )
        if tenant is not None:
            query = query.where(requests.c.tenant == tenant)
        if since_ts is not None:
            query = query.where(requests.c.ts >= since_ts)
        if until_ts is not None:
            query = query.where(requests.c.ts < until_ts)
        if cols:
            query = query.group_by(*cols).order_by(*cols)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        n = len(cols)
        return [
            UsageRow(
                group={name: "" if r[i] is None else str(r[i]) for i, name in enumerate(names)},
                requests=int(r[n]),
                succeeded=int(r[n + 1]),
                prompt_tokens=int(r[n + 2]),
                completion_tokens=int(r[n + 3]),
                cost_usd=float(r[n + 4]),
            )
            for r in rows
            if int(r[n]) > 0
        ]

    def spent_since(self, *, since_ts: float, key_id: str | None = None, tenant: str | None = None) -> float:
        """Cost recorded since ``since_ts`` for one key or one tenant: where budgets restart from."""
        query = select(func.coalesce(func.sum(requests.c.cost_usd), 0.0)).where(requests.c.ts >= since_ts)
        if key_id is not None:
            query = query.where(requests.c.key_id == key_id)
        if tenant is not None:
            query = query.where(requests.c.tenant == tenant)
        with self.engine.connect() as conn:
            return float(conn.execute(query).scalar_one())
