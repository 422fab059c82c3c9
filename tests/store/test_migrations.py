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


def test_a_database_without_migration_history_is_refused_clearly(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from goldenpath.store import StoreError

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # what a pre-release build made
        conn.exec_driver_sql("CREATE TABLE requests (id TEXT PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO requests VALUES ('r1')")
    store = Store(url)
    with pytest.raises(StoreError, match="without a migration history"):
        store.migrate()
    with engine.connect() as conn:  # untouched
        assert conn.exec_driver_sql("SELECT id FROM requests").scalar_one() == "r1"
        assert "alembic_version" not in sa.inspect(conn).get_table_names()
