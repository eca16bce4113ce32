"""Migrations run once on first use, and a database from a newer Shipyard is refused untouched."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from shipyard.store import SchemaTooNew, create_store_engine, migrate
from shipyard.store.migrate import current_revision, head_revision
from shipyard.store.tables import metadata


def test_first_use_creates_every_table_and_stamps_head(database_url: str) -> None:
    engine = create_store_engine(database_url)
    try:
        assert current_revision(engine) is None
        migrate(engine)
        migrate(engine)
        assert current_revision(engine) == head_revision()
        assert set(metadata.tables) <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrations_match_the_tables(database_url: str) -> None:
    """Every column declared in tables.py exists after migrating, so the two never drift apart."""
    engine = create_store_engine(database_url)
    try:
        migrate(engine)
        inspector = inspect(engine)
        for table in metadata.tables.values():
            found = {column["name"] for column in inspector.get_columns(table.name)}
            assert found == {column.name for column in table.columns}, table.name
    finally:
        engine.dispose()


def test_database_from_a_newer_shipyard_is_refused(database_url: str) -> None:
    engine = create_store_engine(database_url)
    try:
        migrate(engine)
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
        with pytest.raises(SchemaTooNew, match=r"schema revision '9999_future'.*upgrade Shipyard") as caught:
            migrate(engine)
        assert "password" not in caught.value.message
        assert current_revision(engine) == "9999_future"
    finally:
        engine.dispose()
