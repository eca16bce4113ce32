"""The runtime's rows: what a deploy changes, refresh versions, deletes, and the registry's in-use check."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from shipyard.registry import VersionInUse, open_registry, register_model
from shipyard.runtime.local import state
from shipyard.runtime.local.release import prepare
from shipyard.settings import get_settings
from shipyard.store import create_store_engine, migrate, write_transaction
from tests.serving.conftest import make_project

SPEC = """
- name: echo
  handler: handlers.py:Echo
  autoscaling: {min_replicas: 2, max_replicas: 4}
- name: split
  kind: TrafficSplitter
  apis: [{name: echo, weight: 100}]
"""


@pytest.fixture
def engine() -> Engine:
    found = create_store_engine(get_settings().database_url)
    migrate(found)
    return found


def record(engine: Engine, project: Path) -> dict[str, state.Outcome]:
    with write_transaction(engine) as connection:
        return {
            r.name: state.record_release(connection, r, "spec.yaml", str(project), 1.0)
            for r in prepare(project).releases
        }


def test_deploy_outcomes(engine: Engine, tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", SPEC)
    assert record(engine, project) == {"echo": state.Outcome.created, "split": state.Outcome.created}
    assert record(engine, project) == {"echo": state.Outcome.unchanged, "split": state.Outcome.unchanged}
    (project / "shipyard.yaml").write_text(SPEC.replace("max_replicas: 4", "max_replicas: 5"))
    assert record(engine, project)["echo"] is state.Outcome.updated
    (project / "shipyard.yaml").write_text(SPEC.replace("handlers.py:Echo", "handlers.py:Slow"))
    assert record(engine, project)["echo"] is state.Outcome.rolling
    with write_transaction(engine) as connection:
        assert state.get_deployment(connection, "echo").replicas == 2  # init = min_replicas


def test_an_api_of_another_project_is_refused_unless_forced(engine: Engine, tmp_path: Path) -> None:
    ours = make_project(tmp_path / "ours", SPEC)
    theirs = make_project(tmp_path / "theirs", SPEC.replace("max_replicas: 4", "max_replicas: 3"))
    record(engine, ours)
    assert record(engine, ours / "shipyard.yaml")["echo"] is state.Outcome.unchanged  # the same project, as a file
    with pytest.raises(state.APIOwnedElsewhere, match=f"already deployed from another project, {ours}") as refused:
        record(engine, theirs)
    assert "--force" in refused.value.message and refused.value.status_code == 409
    with write_transaction(engine) as connection:
        assert state.get_deployment(connection, "echo").source == str(ours)  # nothing was recorded
        taken = {
            r.name: state.record_release(connection, r, "s.yaml", str(theirs), 2.0, force=True)
            for r in prepare(theirs).releases
        }
        assert taken == {"echo": state.Outcome.updated, "split": state.Outcome.unchanged}
    assert record(engine, theirs)["echo"] is state.Outcome.unchanged  # theirs now: no --force needed again


def test_refresh_keeps_the_release_and_a_redeploy_keeps_the_refresh(engine: Engine, tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", SPEC)
    record(engine, project)
    with write_transaction(engine) as connection:
        before = state.get_deployment(connection, "echo").version
        refreshed = state.refresh(connection, "echo", 2.0)
        assert refreshed == f"{before}+1"
        assert state.get_release(connection, "echo", refreshed).project == "spec.yaml"
    assert record(engine, project)["echo"] is state.Outcome.unchanged


def test_delete_refuses_an_api_behind_a_splitter(engine: Engine, tmp_path: Path) -> None:
    record(engine, make_project(tmp_path / "p", SPEC))
    with write_transaction(engine) as connection, pytest.raises(state.APIInUse, match="splitter"):
        state.delete_deployment(connection, "echo")
    with write_transaction(engine) as connection:
        state.delete_deployment(connection, "split")
        state.delete_deployment(connection, "echo")
        assert state.list_deployments(connection) == []
        with pytest.raises(state.APINotFound, match="'echo' is not deployed"):
            state.get_deployment(connection, "echo")


def test_a_deployed_model_version_cannot_be_deleted(engine: Engine, tmp_path: Path) -> None:
    weights = tmp_path / "model"
    weights.mkdir()
    (weights / "w.bin").write_bytes(b"w")
    register_model("iris", weights)
    spec = "- name: iris\n  handler: handlers.py:Echo\n  model: models:/iris:1\n"
    record(engine, make_project(tmp_path / "p", spec))
    with open_registry() as registry, pytest.raises(VersionInUse, match="deployment 'iris'"):
        registry.delete("iris", 1)


def test_recent_events_keep_the_last_scaling_decisions_however_many_crashes_came_since(engine: Engine) -> None:
    scaled = [state.Event(float(n), "echo", "scaled", f"scale {n} → {n + 1}") for n in range(7)]
    flaps = [state.Event(100.0 + n, "echo", "crashed", f"crash {n}", "echo-1") for n in range(40)]
    with write_transaction(engine) as connection:
        state.record_events(connection, [*scaled, *flaps])
        found = state.recent_events(connection, "echo", 10)
    assert [e.message for e in found[:5]] == [f"scale {n} → {n + 1}" for n in range(2, 7)]  # oldest first
    assert [e.message for e in found[5:]] == [f"crash {n}" for n in range(30, 40)]


def test_changing_only_the_daemons_timeouts_restarts_nothing(engine: Engine, tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", SPEC)
    record(engine, project)
    timed = SPEC.replace("handlers.py:Echo", "handlers.py:Echo\n  startup_timeout: 10s\n  health_check: {timeout: 2s}")
    (project / "shipyard.yaml").write_text(timed)
    assert record(engine, project)["echo"] is state.Outcome.updated


def test_the_newest_event_among_some_kinds_per_api(engine: Engine) -> None:
    found = [("a", "live"), ("a", "scaling"), ("a", "crashed"), ("b", "live"), ("c", "deployed")]
    with write_transaction(engine) as connection:
        state.record_events(connection, [state.Event(float(n), api, kind, "") for n, (api, kind) in enumerate(found)])
        assert state.last_of_kinds(connection, ["live", "scaling"]) == {"a": "scaling", "b": "live"}
