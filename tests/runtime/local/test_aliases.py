"""Alias following: which APIs roll out when an alias moves (pure), the release a move produces, a move
checked out beside the loop, and failed moves tried again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine

from shipyard.registry import open_registry, promote_model, register_model
from shipyard.registry.versions import ModelVersion
from shipyard.runtime.local import state
from shipyard.runtime.local.aliases import (
    RETRY_BASE,
    AliasFollower,
    Failure,
    Following,
    Holder,
    Move,
    Pin,
    failed,
    is_due,
    moves,
)
from shipyard.runtime.local.release import PinnedModel, prepare, repinned, snapshot
from shipyard.settings import get_settings
from shipyard.store import create_store_engine, migrate, read_transaction, write_transaction
from tests.serving.conftest import make_project

FOLLOWER = """
- name: echo
  handler: handlers.py:Echo
  model: models:/m@production
"""


def test_only_an_api_whose_alias_holds_another_version_moves() -> None:
    pins = [
        Pin("a", "v-a", "m", "production", 1),
        Pin("b", "v-b", "m", "production", 2),
        Pin("c", "v-c", "m", "staging", 1),
        Pin("d", "v-d", "gone", "production", 1),
    ]
    holders = {("m", "production"): Holder(2, "t1"), ("m", "staging"): Holder(None)}
    assert moves(pins, holders) == [Move("a", "v-a", "m", "production", 2)]
    assert moves(pins, holders)[0].reason == "alias production moved to m:2"


def test_a_repinned_release_is_the_one_a_deploy_would_make_and_pins_the_new_version(tmp_path: Path) -> None:
    for number in (1, 2):
        weights = tmp_path / f"w{number}"
        weights.mkdir()
        (weights / "w.txt").write_text(str(number))
        register_model("m", weights)
    promote_model("m:1", "production")
    project = make_project(tmp_path / "p", FOLLOWER)
    [first] = prepare(project).releases
    spec_file = snapshot(first, prepare(project).project, tmp_path / "releases")
    promote_model("m:2", "production")
    [deployed] = prepare(project).releases
    assert deployed.model is not None and deployed.model.version == 2

    moved = repinned("echo", first.spec, spec_file, deployed.model, {spec_file.name})
    assert moved.version == deployed.version != first.version
    written = spec_file.with_name(f"echo-{moved.version}.yaml")
    assert yaml.safe_load(written.read_text())[0]["model"] == "models:/m:2"
    back = repinned(
        "echo",
        first.spec,
        spec_file,
        PinnedModel("m", 1, first.model.digest if first.model else None),
        {
            spec_file.name,
            written.name,
        },
    )
    assert back.version == first.version


def test_a_failed_move_is_tried_again_with_backoff_and_at_once_when_the_alias_is_written_again() -> None:
    first = failed(None, Holder(3, "t1"), 100.0, "damaged blob")
    assert first == Failure(1, 100.0 + RETRY_BASE, "t1", "damaged blob")
    assert not is_due(first, Holder(3, "t1"), 100.0 + RETRY_BASE - 1)
    assert is_due(first, Holder(3, "t1"), 100.0 + RETRY_BASE)
    assert is_due(first, Holder(3, "t2"), 101.0)  # promoted again (the blob repaired, say): no waiting
    again = failed(first, Holder(3, "t1"), 110.0, "damaged blob")
    assert (again.attempts, again.retry_at) == (2, 110.0 + 2 * RETRY_BASE)
    assert failed(again, Holder(3, "t2"), 120.0, "damaged blob").attempts == 1  # a new write starts over
    assert failed(None, Holder(3), 0.0, "x").retry_at <= 300.0
    assert failed(Failure(30, 0.0, None, "x"), Holder(3), 0.0, "x").retry_at == 300.0


@dataclass
class Store:
    engine: Engine
    root: Path
    project: Path

    def register(self, number: int, content: bytes) -> ModelVersion:
        weights = self.root / f"w{number}"
        weights.mkdir()
        (weights / "w.bin").write_bytes(content)
        return register_model("m", weights)

    def deploy(self) -> state.Outcome:
        prepared = prepare(self.project)
        [release] = prepared.releases
        spec_file = snapshot(release, prepared.project, self.root / "releases")
        with write_transaction(self.engine) as connection:
            return state.record_release(connection, release, str(spec_file), str(self.project), 1.0)

    def deployments(self) -> list[state.Deployment]:
        with read_transaction(self.engine) as connection:
            return state.list_deployments(connection)

    def served(self) -> int | None:
        [api] = self.deployments()
        with read_transaction(self.engine) as connection:
            return state.get_release(connection, "echo", api.version).model_version

    def settle(self, follower: AliasFollower, now: float) -> list[state.Event]:
        """Tick until the move under way has finished; the events of the tick that saw it finish."""
        events = follower.follow(self.deployments(), now)
        deadline = time.monotonic() + 60
        while follower.is_busy() and time.monotonic() < deadline:
            time.sleep(0.02)
        return events + follower.follow(self.deployments(), now)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    engine = create_store_engine(get_settings().database_url)
    migrate(engine)
    yield Store(engine, tmp_path, make_project(tmp_path / "p", FOLLOWER))
    engine.dispose()


def test_a_promotion_made_while_no_daemon_ran_rolls_out_at_the_first_look(store: Store) -> None:
    store.register(1, b"1")
    store.register(2, b"2")
    promote_model("m:1", "production")
    store.deploy()
    promote_model("m:2", "production")  # no daemon runs: nobody is told
    follower = AliasFollower(store.engine)
    [event] = store.settle(follower, 5.0)
    [api] = store.deployments()
    assert (event.api, event.kind) == ("echo", "alias-moved")
    assert event.message == f"alias production moved to m:2; rolling out version {api.version}"
    assert store.served() == 2
    assert follower.follow(store.deployments(), 6.0) == []
    assert store.deploy() is state.Outcome.unchanged  # the version is the one a deploy of the project gets


def test_a_big_version_is_checked_out_beside_the_loop_which_keeps_ticking(store: Store) -> None:
    store.register(1, b"1")
    store.register(2, b"w" * (128 << 20))  # 128 MiB: copied and hashed twice over to check it out
    promote_model("m:1", "production")
    store.deploy()
    promote_model("m:2", "production")
    follower = AliasFollower(store.engine)
    assert follower.follow(store.deployments(), 5.0) == []  # started, not waited for
    assert follower.is_busy() and store.served() == 1
    ticks, events = 0, []
    while follower.is_busy():
        events += follower.follow(store.deployments(), 5.0)  # each tick returns while the checkout runs
        ticks += 1
    assert ticks >= 2
    [event] = events + follower.follow(store.deployments(), 6.0)
    assert event.kind == "alias-moved" and store.served() == 2


def test_a_move_that_failed_is_tried_again_once_the_alias_is_set_again(store: Store) -> None:
    store.register(1, b"1")
    damaged = store.register(2, b"good weights")
    promote_model("m:1", "production")
    store.deploy()
    promote_model("m:2", "production")
    [entry] = damaged.manifest.files
    with open_registry() as registry:
        blob = Path(registry.artifacts.blob_path(entry.sha256))
    blob.write_bytes(b"bit rot")  # after the promotion, which verifies the files, and before the rollout
    follower = AliasFollower(store.engine)
    [event] = store.settle(follower, 5.0)
    assert event.kind == "rollout-failed" and "alias production moved to m:2, but it cannot roll out" in event.message
    assert store.served() == 1
    [following] = follower.following.values()
    assert following.alias == "production" and following.holds == 2 and "w.bin" in (following.error or "")
    assert store.settle(follower, 6.0) == [] and not follower.is_busy()  # within its backoff: not tried
    assert store.settle(follower, 5.0 + RETRY_BASE) == []  # tried again, failed the same way: said once
    assert store.served() == 1

    blob.write_bytes(b"good weights")  # repaired, and promoted again: the same version, a new write
    promote_model("m:2", "production", reason="blob repaired")
    [event] = store.settle(follower, 7.0)
    assert event.kind == "alias-moved" and store.served() == 2
    assert follower.following == {"echo": Following("production", 2)}
