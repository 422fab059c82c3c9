"""Tables, as SQLAlchemy Core metadata shared by SQLite and PostgreSQL.

The migrations in ``migrations/versions`` create exactly these; a test checks they agree.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

metadata = MetaData()

tenants = Table(
    "tenants",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("rpm", Integer, nullable=True),
    Column("tpm", Integer, nullable=True),
    Column("budget_usd", Float, nullable=True),
    Column("budget_period", String(8), nullable=True),
    Column("budget_hard", Boolean, nullable=False, default=True),
)

principals = Table(
    "principals",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant", String(200), ForeignKey("tenants.name"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("kind", String(16), nullable=False),  # user | service | group
    Column("groups", JSON, nullable=False, default=list),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("tenant", "name", name="uq_principals_tenant_name"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("key_hash", String(128), nullable=False, unique=True),
    Column("prefix", String(32), nullable=False),
    Column("name", String(200), nullable=False),
    Column("tenant", String(200), nullable=False),
    Column("principal_id", String(64), nullable=True),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("models", JSON, nullable=True),  # null: every alias
    Column("rpm", Integer, nullable=True),
    Column("tpm", Integer, nullable=True),
    Column("budget_usd", Float, nullable=True),
    Column("budget_period", String(8), nullable=True),
    Column("budget_hard", Boolean, nullable=False, default=True),
    Column("expires_at", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    Index("ix_api_keys_tenant", "tenant"),
)

# One row whose version goes up on every change of keys or tenants; replicas poll it to reload.
state_version = Table(
    "state_version",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", Integer, nullable=False),
)

requests = Table(
    "requests",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("ts", Float, nullable=False),
    Column("day", String(10), nullable=False),  # UTC YYYY-MM-DD, for usage reports on any database
    Column("key_id", String(64), nullable=True),
    Column("tenant", String(200), nullable=True),
    Column("endpoint", String(32), nullable=False),
    Column("model", String(200), nullable=True),
    Column("deployment", String(200), nullable=True),
    Column("status", Integer, nullable=False),
    Column("error_type", String(64), nullable=True),
    Column("stream", Boolean, nullable=False, default=False),
    Column("cache", String(16), nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("cost_usd", Float, nullable=False, default=0.0),
    Column("latency_ms", Float, nullable=False),
    Column("ttft_ms", Float, nullable=True),
    Column("overhead_ms", Float, nullable=True),
    Column("decisions", JSON, nullable=True),  # guard and policy decisions: detector, score, reason; no text
    Index("ix_requests_ts", "ts"),
    Index("ix_requests_key_ts", "key_id", "ts"),
    Index("ix_requests_tenant_day", "tenant", "day"),
)
