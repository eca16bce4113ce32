"""Releases: version digests that change only with what replicas load, and frozen, pinned snapshots."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shipyard.errors import ConfigError
from shipyard.runtime.local.release import prepare, snapshot
from tests.serving.conftest import make_project

SPEC = """
- name: echo
  handler: handlers.py:Echo
  config: {greeting: hi}
- name: split
  kind: TrafficSplitter
  apis: [{name: echo, weight: 100}]
"""


def version_of(project: Path, name: str = "echo") -> str:
    return next(r.version for r in prepare(project).releases if r.name == name)


def test_version_changes_with_code_and_config_but_not_with_scaling(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", SPEC)
    first = version_of(project)
    assert version_of(project) == first
    (project / "shipyard.yaml").write_text(
        SPEC.replace("handler: handlers.py:Echo", "handler: handlers.py:Echo\n  autoscaling: {max_replicas: 3}")
    )
    assert version_of(project) == first
    (project / "shipyard.yaml").write_text(SPEC.replace("hi", "hello"))
    changed = version_of(project)
    assert changed != first
    (project / "handlers.py").write_text((project / "handlers.py").read_text() + "\n# edited\n")
    assert version_of(project) not in (first, changed)


def test_snapshot_is_a_frozen_copy(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", SPEC)
    prepared = prepare(project)
    echo = prepared.releases[0]
    spec_file = snapshot(echo, prepared.project, tmp_path / "releases")
    (project / "handlers.py").write_text("broken = (")
    assert "class Echo" in (spec_file.parent / "handlers.py").read_text()
    assert yaml.safe_load(spec_file.read_text()) == [echo.spec]
    assert prepared.releases[1].kind == "TrafficSplitter" and prepared.releases[1].files_digest is None


def test_handler_class_is_checked_without_running_the_file(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", SPEC.replace("Echo", "Missing"))
    with pytest.raises(ConfigError, match="defines no class 'Missing'"):
        prepare(project)
    (project / "shipyard.yaml").write_text(SPEC.replace("handlers.py", "nope.py"))
    with pytest.raises(ConfigError, match="file 'nope.py' does not exist"):
        prepare(project)


def test_gateway_paths_are_reserved(tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "p", SPEC.replace("name: echo", "name: metrics").replace("{name: echo", "{name: metrics")
    )
    with pytest.raises(ConfigError, match="'metrics' is a path the gateway keeps"):
        prepare(project)


def test_a_model_in_the_project_is_pinned_by_its_digest_and_must_stay_inside(tmp_path: Path) -> None:
    from shipyard.errors import PathOutsideProject
    from shipyard.registry.manifest import build_manifest

    project = make_project(tmp_path / "p", SPEC.replace("config: {greeting: hi}", "model: weights/"))
    (project / "weights").mkdir()
    (project / "weights" / "w.bin").write_bytes(b"\x00\x01")
    echo = prepare(project).releases[0]
    assert echo.model is not None and echo.model.name is None
    assert echo.model.digest == build_manifest(project / "weights").digest
    (project / "shipyard.yaml").write_text(SPEC.replace("config: {greeting: hi}", "model: ../outside/"))
    (tmp_path / "outside").mkdir()
    with pytest.raises(PathOutsideProject, match="outside the project directory"):
        prepare(project)
