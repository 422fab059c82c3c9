"""Tables, as SQLAlchemy Core metadata shared by SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)

metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("key_hash", String(128), nullable=False, unique=True),
    Column("prefix", String(32), nullable=False),
    Column("name", String(200), nullable=False),
    Column("tenant", String(200), nullable=False),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
)

requests = Table(
    "requests",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("ts", Float, nullable=False),
    Column("key_id", String(64), nullable=True),
    Column("tenant", String(200), nullable=True),
    Column("endpoint", String(32), nullable=False),
    Column("model", String(200), nullable=True),
    Column("deployment", String(200), nullable=True),
    Column("status", Integer, nullable=False),
    Column("error_type", String(64), nullable=True),
    Column("stream", Boolean, nullable=False, default=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("latency_ms", Float, nullable=False),
    Column("ttft_ms", Float, nullable=True),
    Column("overhead_ms", Float, nullable=True),
    Index("ix_requests_ts", "ts"),
    Index("ix_requests_key_ts", "key_id", "ts"),
)
