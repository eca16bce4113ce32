"""Migration 0005 on SQLite and PostgreSQL: stored shadow statistics keep their counts and gain `skipped`."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Engine, column, insert, table

from shipyard.runtime.local import state
from shipyard.store import create_store_engine, migrate, read_transaction, write_transaction
from shipyard.store.migrate import _config, current_revision, head_revision
from shipyard.store.tables import metadata


def _upgrade_to(engine: Engine, revision: str) -> None:
    with write_transaction(engine) as connection:
        command.upgrade(_config(connection), revision)


def test_0005_keeps_shadow_counts_and_adds_skipped_copies(database_url: str) -> None:
    engine = create_store_engine(database_url)
    try:
        _upgrade_to(engine, "0004_jobs_fixes")
        old = {"splitter": "front", "shadow": "cand", "compared": 7, "agreed": 5, "failed": 1}
        old |= {"primary_ms": 70.0, "shadow_ms": 35.0, "updated_at": 1.0}
        declared = metadata.tables["shadow_stats"].c
        with write_transaction(engine) as connection:  # an insert as of 0004: no `skipped` column yet
            connection.execute(insert(table("shadow_stats", *(column(k, declared[k].type) for k in old))).values(old))
        migrate(engine)
        assert current_revision(engine) == head_revision()
        delta = state.ShadowStats("front", "cand", 1, 1, 0, 10.0, 5.0, skipped=3)
        with write_transaction(engine) as connection:
            state.add_shadow_stats(connection, delta, now=2.0)
        with read_transaction(engine) as connection:
            (found,) = state.get_shadow_stats(connection, "front")
        assert found == state.ShadowStats("front", "cand", 8, 6, 1, 80.0, 40.0, skipped=3)
    finally:
        engine.dispose()
