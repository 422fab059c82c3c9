"""The Alembic migrations build exactly the schema the code queries, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from goldenpath.store import Store
from goldenpath.store._schema import metadata


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrations_match_the_schema(backend: str, tmp_path: Path, postgres_url: str) -> None:
    store = Store(f"sqlite:///{tmp_path / 'gp.db'}" if backend == "sqlite" else postgres_url)
    store.migrate()
    store.migrate()  # idempotent
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    assert store.version() >= 1
    store.close()
