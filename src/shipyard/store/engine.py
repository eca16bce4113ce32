"""The database engine: SQLite (WAL, busy timeout) by default, PostgreSQL through psycopg.

Transactions are explicit. On SQLite the driver's own transaction handling is switched off and each
transaction starts with `BEGIN` (reads) or `BEGIN IMMEDIATE` (writes), so two writers queue on the busy
timeout instead of failing with "database is locked" when one upgrades a read lock to a write lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

from shipyard.errors import ShipyardError

BUSY_TIMEOUT_MS = 30_000
_SUPPORTED = ("sqlite", "postgresql")


class DatabaseURLError(ShipyardError):
    status_code = 400

    def __init__(self, url: str, problem: str) -> None:
        super().__init__(
            f"SHIPYARD_DATABASE_URL {url!r} {problem}; use sqlite:///PATH or "
            "postgresql+psycopg://USER@HOST:PORT/DATABASE"
        )


def redact(url: str) -> str:
    """The URL with its password hidden, fit for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown as its scheme only, never whole
        return url.split("://", 1)[0] + "://..."


def create_store_engine(url: str) -> Engine:
    """An engine for `url`; a SQLite file's folder is created when missing."""
    try:
        parsed = make_url(url)
    except Exception:
        raise DatabaseURLError(redact(url), "is not a database URL") from None
    backend = parsed.get_backend_name()
    if backend not in _SUPPORTED:
        raise DatabaseURLError(redact(url), f"names the unsupported database {backend!r}")
    if backend == "sqlite":
        return _sqlite_engine(url, parsed.database)
    if parsed.get_driver_name() != "psycopg":
        raise DatabaseURLError(redact(url), "must use the psycopg driver (postgresql+psycopg://)")
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def _sqlite_engine(url: str, database: str | None) -> Engine:
    if database and database != ":memory:":
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
    event.listen(engine, "connect", _configure_sqlite)
    event.listen(engine, "begin", _begin_sqlite)
    return engine


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, see _begin_sqlite
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _begin_sqlite(connection: Connection) -> None:
    mode = "IMMEDIATE" if connection.get_execution_options().get("shipyard_write") else "DEFERRED"
    connection.exec_driver_sql(f"BEGIN {mode}")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: on SQLite it takes the write lock up front."""
    with engine.connect() as connection:
        connection = connection.execution_options(shipyard_write=True)
        with connection.begin():
            yield connection


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as connection, connection.begin():
        yield connection
