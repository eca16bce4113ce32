"""Bring a database to the schema this code knows, once, safely, from any number of processes.

The upgrade runs inside one write transaction that first takes a lock (SQLite: the write lock;
PostgreSQL: a transaction-level advisory lock), so concurrent first uses migrate once and the others
find the work done. A database stamped with a revision this code does not know came from a newer
Shipyard and is refused untouched.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from shipyard.errors import ShipyardError
from shipyard.store.engine import connect, redact, write_transaction

MIGRATIONS = Path(__file__).with_name("migrations")
_ADVISORY_LOCK_KEY = 0x5348_4950  # "SHIP"
VERSION_TABLE = "alembic_version"


class SchemaTooNew(ShipyardError):
    status_code = 500

    def __init__(self, url: str, found: str, known: str) -> None:
        super().__init__(
            f"database {url} has schema revision {found!r}, which this Shipyard does not know (its newest "
            f"is {known!r}); it was written by a newer Shipyard: upgrade Shipyard, or point "
            "SHIPYARD_DATABASE_URL at another database"
        )


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None, "the migrations folder holds no revision"
    return head


def current_revision(engine: Engine) -> str | None:
    with connect(engine) as connection:
        return _stamped(connection)


def _stamped(connection: Connection) -> str | None:
    """The revision in alembic's version table, read directly (alembic's own reader logs every call)."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    return connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def migrate(engine: Engine) -> None:
    """Upgrade to the newest revision; refuse a database from a newer Shipyard."""
    scripts = ScriptDirectory(str(MIGRATIONS))
    head = head_revision()
    if current_revision(engine) == head:
        return
    with write_transaction(engine) as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
        found = _stamped(connection)
        if found is not None and found not in {script.revision for script in scripts.walk_revisions()}:
            raise SchemaTooNew(redact(engine.url.render_as_string(hide_password=False)), found, head)
        if found != head:
            command.upgrade(_config(connection), "head")
