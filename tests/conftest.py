"""Fixtures shared by every test: an isolated SHIPYARD_HOME."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def shipyard_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own SHIPYARD_HOME, so no test sees another's state or the user's."""
    home = tmp_path_factory.mktemp("shipyard-home")
    monkeypatch.setenv("SHIPYARD_HOME", str(home))
    for name in ("SHIPYARD_DATABASE_URL", "SHIPYARD_ARTIFACTS", "SHIPYARD_URL", "SHIPYARD_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return home


# -- databases: the same registry/store tests run on SQLite and on PostgreSQL -------------------------------

POSTGRES_URL_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _postgres_url() -> str:
    import os

    return os.environ.get("SHIPYARD_TEST_POSTGRES_URL") or POSTGRES_URL_DEFAULT


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The PostgreSQL URL, once it answers; skips when it does not, but fails under CI=true."""
    import os

    import sqlalchemy

    url = _postgres_url()
    engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
    except Exception as exc:  # any failure to connect means "not reachable" here
        reason = f"PostgreSQL at {url} is unreachable: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    finally:
        engine.dispose()
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, shipyard_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """SHIPYARD_DATABASE_URL for one test: SQLite in its SHIPYARD_HOME, or a fresh PostgreSQL schema that
    is dropped afterwards. Child processes inherit it through the environment."""
    if request.param == "sqlite":
        url = f"sqlite:///{shipyard_home / 'shipyard.db'}"
        monkeypatch.setenv("SHIPYARD_DATABASE_URL", url)
        yield url
        return
    yield from _postgres_schema(request.getfixturevalue("postgres_server"), monkeypatch)


def _postgres_schema(server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    import uuid

    import sqlalchemy

    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = sqlalchemy.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in server else "?"
    url = f"{server}{separator}options=-csearch_path%3D{schema}"
    monkeypatch.setenv("SHIPYARD_DATABASE_URL", url)
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
