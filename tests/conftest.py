"""Fixtures shared by every test: an isolated SHIPYARD_HOME."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def shipyard_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own SHIPYARD_HOME, so no test sees another's state or the user's."""
    home = tmp_path_factory.mktemp("shipyard-home")
    monkeypatch.setenv("SHIPYARD_HOME", str(home))
    for name in ("SHIPYARD_DATABASE_URL", "SHIPYARD_ARTIFACTS", "SHIPYARD_URL", "SHIPYARD_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    yield home
