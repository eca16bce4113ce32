from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shipyard.registry import Registry


@pytest.fixture
def registry(database_url: str) -> Iterator[Registry]:
    """A registry on a fresh database (SQLite, then PostgreSQL) and the test's own SHIPYARD_HOME."""
    with Registry.from_env() as opened:
        yield opened


@pytest.fixture
def as_user(registry: Registry) -> Callable[[str], Registry]:
    """The same registry acting as another OS account: stands in for a colleague on another machine."""

    def acting(identity: str) -> Registry:
        return Registry(registry.engine, registry.artifacts, registry.home, identity=identity)

    return acting


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    root.mkdir()
    (root / "weights.bin").write_bytes(b"weights" * 100)
    (root / "config.json").write_text('{"classes": 3}')
    return root
