"""Alias following: which APIs roll out when an alias moves (pure), and the release a move produces."""

from __future__ import annotations

from pathlib import Path

import yaml

from shipyard.registry import promote_model, register_model
from shipyard.runtime.local import state
from shipyard.runtime.local.aliases import AliasFollower, Move, Pin, moves
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
    holders: dict[tuple[str, str], int | None] = {("m", "production"): 2, ("m", "staging"): None}
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


def test_a_promotion_made_while_no_daemon_ran_rolls_out_at_the_first_look(tmp_path: Path) -> None:
    engine = create_store_engine(get_settings().database_url)
    migrate(engine)
    for number in (1, 2):
        weights = tmp_path / f"w{number}"
        weights.mkdir()
        (weights / "w.txt").write_text(str(number))
        register_model("m", weights)
    promote_model("m:1", "production")
    project = make_project(tmp_path / "p", FOLLOWER)

    def deploy() -> state.Outcome:
        prepared = prepare(project)
        [release] = prepared.releases
        spec_file = snapshot(release, prepared.project, tmp_path / "releases")
        with write_transaction(engine) as connection:
            return state.record_release(connection, release, str(spec_file), str(project), 1.0)

    def deployments() -> list[state.Deployment]:
        with read_transaction(engine) as connection:
            return state.list_deployments(connection)

    deploy()
    promote_model("m:2", "production")  # no daemon runs: nobody is told
    follower = AliasFollower(engine)
    [event] = follower.follow(deployments(), 5.0)
    [api] = deployments()
    assert (event.api, event.kind) == ("echo", "alias-moved")
    assert event.message == f"alias production moved to m:2; rolling out version {api.version}"
    with read_transaction(engine) as connection:
        assert state.get_release(connection, "echo", api.version).model_version == 2
    assert follower.follow(deployments(), 6.0) == []
    assert deploy() is state.Outcome.unchanged  # the version is the one a deploy of the project gets
    engine.dispose()
