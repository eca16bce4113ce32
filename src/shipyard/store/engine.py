"""The database engine: SQLite (WAL, busy timeout) by default, PostgreSQL through psycopg.

Transactions are explicit. On SQLite the driver's own transaction handling is switched off and each
transaction starts with `BEGIN` (reads) or `BEGIN IMMEDIATE` (writes), so two writers queue on the busy
timeout instead of failing with "database is locked" when one upgrades a read lock to a write lock.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

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


class StoreUnavailable(ShipyardError):
    """The database cannot be opened: the server is down, the database is missing, the file is damaged."""

    status_code = 503

    def __init__(self, url: str, problem: str, remedy: str) -> None:
        super().__init__(f"cannot open the database {url}: {problem}; {remedy}")


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
        folder = Path(database).expanduser().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            why = "a file is in the way" if isinstance(exc, FileExistsError | NotADirectoryError) else exc.strerror
            raise StoreUnavailable(
                redact(url),
                f"its folder {str(folder)!r} cannot be created ({why or type(exc).__name__})",
                "point SHIPYARD_HOME (or SHIPYARD_DATABASE_URL) at a folder you can write",
            ) from exc
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
def connect(engine: Engine) -> Iterator[Connection]:
    """A connection; failing to open one (server down, no such database, damaged file) is one clear error."""
    try:
        connection = engine.connect()
    except DBAPIError as exc:
        raise unavailable(engine, exc) from exc
    with connection:
        yield connection


def unavailable(engine: Engine, exc: DBAPIError) -> StoreUnavailable:
    url = engine.url.render_as_string(hide_password=True)
    problem = " ".join(str(exc.orig).split()) or type(exc.orig).__name__
    if engine.url.password:
        problem = problem.replace(str(engine.url.password), "***")
    if engine.dialect.name == "sqlite":
        remedy = (
            "if the file is damaged or is not Shipyard's, move it aside or point SHIPYARD_DATABASE_URL at another file"
        )
    else:
        remedy = "check SHIPYARD_DATABASE_URL, that the server runs and accepts you, and that the database exists"
    return StoreUnavailable(url, problem, remedy)


def too_long_columns(exc: Exception) -> list[str]:
    """`table.column holds at most N characters, got M` for each bounded text column the failed INSERT or
    UPDATE gave too long a value (PostgreSQL names only the type; SQLite does not check at all).
    Never the value itself, which may be a secret."""
    from shipyard.store.tables import metadata

    statement = str(getattr(exc, "statement", "") or "")
    found = re.match(r"\s*(?:INSERT\s+INTO|UPDATE)\s+\"?(\w+)\"?", statement, re.IGNORECASE)
    table = metadata.tables.get(found[1]) if found else None
    params = getattr(exc, "params", None)
    rows = params if isinstance(params, list | tuple) else [params]
    if table is None:
        return []
    problems = []
    for row in rows:
        for key, value in (row or {}).items() if isinstance(row, dict) else ():
            column = table.columns.get(key)
            limit = getattr(column.type, "length", None) if column is not None else None
            if isinstance(value, str) and limit is not None and len(value) > limit:
                problems.append(f"{table.name}.{key} holds at most {limit} characters, got {len(value)}")
    return list(dict.fromkeys(problems))


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: on SQLite it takes the write lock up front."""
    with connect(engine) as connection:
        connection = connection.execution_options(shipyard_write=True)
        with connection.begin():
            yield connection


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    with connect(engine) as connection, connection.begin():
        yield connection
