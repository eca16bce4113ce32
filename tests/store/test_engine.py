from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, make_url, text

from shipyard.store import create_store_engine, redact, write_transaction
from shipyard.store.engine import DatabaseURLError


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'deep' / 'x.db'}")
    try:
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 30_000
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        engine.dispose()


def insert_then_fail(engine: Engine) -> None:
    with write_transaction(engine) as connection:
        connection.execute(text("INSERT INTO t VALUES (1)"))
        raise RuntimeError("boom")


def test_write_transactions_roll_back_on_error(tmp_path: Path) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE t (x INTEGER)"))
        with pytest.raises(RuntimeError):
            insert_then_fail(engine)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM t")).scalar() == 0
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root@localhost/db", "names the unsupported database 'mysql'"),
        ("postgresql+psycopg2://u:secret@h/db", "must use the psycopg driver"),
        ("not a url", "is not a database URL"),
    ],
)
def test_bad_urls_are_explained_without_passwords(url: str, message: str) -> None:
    with pytest.raises(DatabaseURLError, match=message) as caught:
        create_store_engine(url)
    assert "secret" not in caught.value.message


def test_redact_hides_the_password() -> None:
    assert redact("postgresql+psycopg://u:secret@h:5432/db") == "postgresql+psycopg://u:***@h:5432/db"


def test_a_write_transaction_takes_the_sqlite_write_lock_up_front(tmp_path: Path) -> None:
    """Two writers queue on the lock rather than both reading before either writes (promotions rely on it)."""
    import sqlite3

    database = tmp_path / "x.db"
    engine = create_store_engine(f"sqlite:///{database}")
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE t (x INTEGER)"))
        with write_transaction(engine) as connection:
            connection.execute(text("SELECT count(*) FROM t"))  # reads only, yet holds the write lock
            other = sqlite3.connect(database, timeout=0, isolation_level=None)
            with pytest.raises(sqlite3.OperationalError, match="database is locked"):
                other.execute("BEGIN IMMEDIATE")
            other.close()
    finally:
        engine.dispose()


def test_a_damaged_sqlite_file_is_one_clear_error(tmp_path: Path) -> None:
    from shipyard.store import StoreUnavailable, migrate

    (tmp_path / "x.db").write_text("these bytes are not a SQLite database" * 100)
    engine = create_store_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with pytest.raises(StoreUnavailable, match=r"x\.db: file is not a database; if the file is damaged"):
            migrate(engine)
    finally:
        engine.dispose()


def test_a_file_where_the_database_folder_should_be_is_one_clear_error(tmp_path: Path) -> None:
    from shipyard.store import StoreUnavailable

    (tmp_path / "home").write_text("a file")
    with pytest.raises(StoreUnavailable, match=r"folder '.*home' cannot be created \(a file is in the way\)"):
        create_store_engine(f"sqlite:///{tmp_path / 'home' / 'shipyard.db'}")


def test_an_unreachable_server_is_one_clear_error_without_the_password() -> None:
    from shipyard.store import StoreUnavailable, migrate
    from tests.support import free_port

    engine = create_store_engine(f"postgresql+psycopg://u:secret@127.0.0.1:{free_port()}/db?connect_timeout=3")
    try:
        with pytest.raises(StoreUnavailable, match=r"the database postgresql\+psycopg://u:\*\*\*@") as caught:
            migrate(engine)
    finally:
        engine.dispose()
    assert "secret" not in caught.value.message
    assert "check SHIPYARD_DATABASE_URL, that the server runs" in caught.value.message


@pytest.mark.postgres
def test_a_missing_postgres_database_is_one_clear_error(postgres_server: str) -> None:
    from shipyard.store import StoreUnavailable, migrate

    url = make_url(postgres_server).set(database="shipyard_no_such_database")
    engine = create_store_engine(url.render_as_string(hide_password=False))
    try:
        with pytest.raises(StoreUnavailable, match=r'database "shipyard_no_such_database" does not exist'):
            migrate(engine)
    finally:
        engine.dispose()


def test_a_value_too_long_for_its_column_is_named_by_column(database_url: str) -> None:
    """PostgreSQL says only `value too long for type character varying(128)`; the message adds the column.
    SQLite keeps the value, which is why the registry checks lengths itself before writing."""
    from datetime import UTC, datetime

    from sqlalchemy.exc import DBAPIError

    from shipyard.cli.output import database_error_text
    from shipyard.store import migrate
    from shipyard.store.tables import registered_models

    engine = create_store_engine(database_url)
    try:
        migrate(engine)
        row = {"name": "iris", "last_version": 0, "created_at": datetime.now(UTC), "created_by": "x" * 200}
        if engine.dialect.name == "sqlite":
            with write_transaction(engine) as connection:
                connection.execute(registered_models.insert().values(**row))
            return
        with pytest.raises(DBAPIError) as caught, write_transaction(engine) as connection:
            connection.execute(registered_models.insert().values(**row))
        message = database_error_text(caught.value)
        assert message.startswith("value too long for type character varying(128)")
        assert message.endswith("(registered_models.created_by holds at most 128 characters, got 200)")
        assert "x" * 20 not in message, "never the value"
    finally:
        engine.dispose()
