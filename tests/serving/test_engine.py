"""The engine on its own: what it does while it loads, before any request."""

from __future__ import annotations

from pathlib import Path

from tests.serving.conftest import make_project

from shipyard.registry.manifest import build_manifest
from shipyard.serving.engine import State
from shipyard.serving.replica import build_engine
from shipyard.spec import RealtimeAPI, load


def test_a_project_model_is_hashed_while_loading_not_before_the_port_opens(tmp_path: Path) -> None:
    project_dir = make_project(tmp_path / "p", "- name: echo\n  handler: handlers.py:Echo\n  model: weights/\n")
    (project_dir / "weights").mkdir()
    (project_dir / "weights" / "w.bin").write_bytes(b"\x01" * 4096)
    project = load(project_dir)
    api = project.apis[0]
    assert isinstance(api, RealtimeAPI)
    engine = build_engine(project, api)  # what `shipyard serve` does before it binds
    assert engine.model.digest is None and engine.describe()["model"]["digest"] is None
    assert engine.state is State.loading
    engine.load()  # in the replica this runs in the load thread, with /healthz answering
    assert engine.state is State.ready
    assert engine.model.digest == build_manifest(project_dir / "weights").digest
    assert engine.describe()["model"] == {
        "source": "weights/",
        "path": "weights",
        "digest": engine.model.digest,
        "name": None,
        "version": None,
    }


def test_the_grace_period_is_not_rounded(tmp_path: Path) -> None:
    from shipyard.serving.app import ReplicaApp
    from shipyard.serving.replica import server_config

    project = load(make_project(tmp_path / "p", "- name: echo\n  handler: handlers.py:Echo\n  grace_period: 500ms\n"))
    api = project.apis[0]
    assert isinstance(api, RealtimeAPI)
    config = server_config(ReplicaApp(build_engine(project, api)), api, "info")
    assert config.timeout_graceful_shutdown == 0.5


def test_predict_batch_may_return_any_sequence_of_one_result_per_payload() -> None:
    import numpy as np

    from shipyard.errors import PredictionFailed
    from shipyard.serving.engine import _batch_results

    ids = ["r1", "r2"]
    assert _batch_results(("a", "b"), ids) == ["a", "b"]
    rows = _batch_results(np.array([[1, 2], [3, 4]]), ids)
    assert [row.tolist() for row in rows] == [[1, 2], [3, 4]]
    assert [float(x) for x in _batch_results(np.array([0.5, 0.25]), ids)] == [0.5, 0.25]
    for not_a_sequence in ("ab", np.float64(1.0), {"a": 1, "b": 2}):
        failed = _batch_results(not_a_sequence, ids)
        assert len(failed) == 2 and all(isinstance(result, PredictionFailed) for result in failed)
