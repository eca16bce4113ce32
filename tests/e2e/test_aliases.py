"""An API that follows `models:/m@production` rolls out when the alias moves, and back when it moves back."""

from __future__ import annotations

from pathlib import Path

import httpx

from shipyard.registry import promote_model, register_model
from tests.e2e.conftest import Daemon, Load, shipyard

FOLLOWER = """
- name: follower
  handler: handlers.py:Echo
  model: models:/m@production
  concurrency: {max_concurrency: 4}
"""


def _register_two(tmp_path: Path) -> None:
    for number in (1, 2):
        weights = tmp_path / f"weights-{number}"
        weights.mkdir()
        (weights / "w.txt").write_text(str(number))
        register_model("m", weights)


def test_promoting_rolls_out_under_load_and_promoting_back_rolls_back(
    database_url: str, daemon: Daemon, tmp_path: Path
) -> None:
    """On SQLite and on PostgreSQL: `database_url` comes first, so the daemon starts on that store."""
    _register_two(tmp_path)
    promote_model("m:1", "production")
    deployed = daemon.deploy(daemon.project(FOLLOWER))
    assert deployed.returncode == 0, deployed.stderr
    assert _served_version(daemon) == 1

    with Load(f"{daemon.gateway}/follower", {"x": 1}, workers=2) as load:
        promoted = shipyard("models", "promote", "m:2", "--to", "production", "--reason", "better")
        assert promoted.returncode == 0, promoted.stderr
        _wait_until_serving(daemon, 2)
    assert load.errors == [] and set(load.codes) == {200}, (load.codes, load.errors[:3])
    assert load.total > 50

    back = shipyard("models", "promote", "m:1", "--to", "production", "--reason", "rollback")
    assert back.returncode == 0, back.stderr
    _wait_until_serving(daemon, 1)
    shown = shipyard("get", "follower")
    assert "alias production moved to m:2" in shown.stdout
    assert "alias production moved to m:1" in shown.stdout


def _served_version(daemon: Daemon) -> int:
    return int(httpx.get(f"{daemon.gateway}/follower/", timeout=10).json()["model"]["version"])


def _wait_until_serving(daemon: Daemon, version: int) -> None:
    def settled() -> bool:
        found = daemon.client.get("follower")
        moved = any(e["message"].startswith(f"alias production moved to m:{version}") for e in found["events"])
        return (
            moved and found["status"] == "live" and len(found["replicas"]) == 1 and _served_version(daemon) == version
        )

    daemon.wait_for(settled, timeout=60, what=f"follower serving m:{version}")
