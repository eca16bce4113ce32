"""Turn a project on disk into releases: validated specs, a version digest each, and a frozen snapshot.

A release's version is the digest of everything its replicas load: the project's files, the API's spec
(without `autoscaling`, `update_strategy`, `startup_timeout` and `health_check`, which only the daemon
reads) and the model's digest. Deploying
an unchanged project gives the same versions, so nothing restarts. The snapshot is a copy of the project
in SHIPYARD_HOME with the API's spec pinned to the exact model version, so a replica restarted days later
loads the code and model it was deployed with, whatever happened to the project or the alias since.
"""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
import uuid
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from shipyard.errors import ConfigError, PathOutsideProject, ShipyardError
from shipyard.registry.manifest import build_manifest
from shipyard.spec import Project, RealtimeAPI, TrafficSplitter, load
from shipyard.spec.loader import SPEC_FILENAMES

RESERVED_NAMES = frozenset({"metrics", "healthz", "readyz"})
"""Paths the gateway answers itself, so no API may take them."""
_SKIPPED_DIRS = frozenset({"__pycache__", ".git", ".venv", "venv", "node_modules", ".mypy_cache", ".pytest_cache"})
_SKIPPED_SUFFIXES = (".pyc", ".log")
_NOT_IN_DIGEST = frozenset(SPEC_FILENAMES)
_VERSION_IGNORES = ("autoscaling", "update_strategy", "startup_timeout", "health_check")


@dataclass(frozen=True)
class PinnedModel:
    name: str | None
    """Registry model name; None for a model inside the project."""
    version: int | None
    digest: str | None


@dataclass(frozen=True)
class Release:
    """One API (or splitter) of a project, ready to record as desired state."""

    name: str
    kind: str
    version: str
    spec: dict[str, Any]
    """The spec as JSON, as the user wrote it (registry references unpinned)."""
    model_ref: str | None
    model: PinnedModel | None
    files_digest: str | None
    """Digest of the project's files; None for a splitter, which has none of its own."""

    @property
    def is_realtime(self) -> bool:
        return self.kind == "RealtimeAPI"


@dataclass(frozen=True)
class PreparedProject:
    project: Project
    releases: tuple[Release, ...]
    skipped: tuple[str, ...]
    """APIs that deploy does not run (batch APIs run as jobs)."""


def prepare(path: str | Path) -> PreparedProject:
    """Load and check a project; every problem is raised before anything is recorded."""
    project = load(path)
    _check_names(project)
    directory = Path(project.directory)
    files = files_digest(directory)
    releases: list[Release] = []
    skipped: list[str] = []
    for api in project.apis:
        if isinstance(api, RealtimeAPI):
            releases.append(_realtime_release(project, api, files))
        elif isinstance(api, TrafficSplitter):
            spec = api.model_dump(mode="json", by_alias=True, exclude_unset=True)
            releases.append(Release(api.name, api.kind, _digest(spec), spec, None, None, None))
        else:
            skipped.append(api.name)
    return PreparedProject(project, tuple(releases), tuple(skipped))


def _check_names(project: Project) -> None:
    problems = [
        f"{project.source}: {api.name}.name: {api.name!r} is a path the gateway keeps for itself "
        f"({', '.join(sorted(RESERVED_NAMES))}); rename the API"
        for api in project.apis
        if api.name in RESERVED_NAMES
    ]
    if problems:
        raise ConfigError(problems)


def _realtime_release(project: Project, api: RealtimeAPI, files: str) -> Release:
    check_handler(project, api)
    spec = api.model_dump(mode="json", by_alias=True, exclude_unset=True)
    model = _pin_model(project, api)
    version = release_version(spec, files, model.digest if model else None)
    return Release(api.name, api.kind, version, spec, api.model, model, files)


def release_version(spec: dict[str, Any], files: str, model_digest: str | None) -> str:
    versioned = {key: value for key, value in spec.items() if key not in _VERSION_IGNORES}
    return _digest({"files": files, "spec": versioned, "model": model_digest})


def repinned(name: str, spec: dict[str, Any], spec_file: Path, model: PinnedModel, written: Collection[str]) -> Release:
    """The release of the same frozen project with its model pinned to another version, with its spec file
    written beside `spec_file`. `written` names the spec files the daemon put in that snapshot, which are
    not project files; the version is then the one a deploy of that project would get for this model."""
    files = files_digest(spec_file.parent, skip=frozenset(written))
    release = Release(
        name, "RealtimeAPI", release_version(spec, files, model.digest), spec, spec["model"], model, files
    )
    _write_spec(release, spec_file.parent)
    return release


def check_handler(project: Project, api: RealtimeAPI) -> None:
    """The handler file exists in the project and defines the class, checked without running user code."""
    if api.is_builtin_handler:
        return
    relative, class_name = api.handler.split(":", 1)
    directory = Path(project.directory)
    path = (directory / relative).resolve()
    where = f"{project.source}: {api.name}.handler"
    if not path.is_relative_to(directory.resolve()):
        raise ConfigError([f"{where}: {relative!r} is outside the project {directory}; move it inside"])
    if not path.is_file():
        raise ConfigError([f"{where}: file {relative!r} does not exist in {directory}; create it or fix the key"])
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError as exc:
        raise ConfigError([f"{where}: {relative} line {exc.lineno}: {exc.msg}; fix the syntax"]) from None
    defined = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    imported = {
        alias.asname or alias.name for node in tree.body if isinstance(node, ast.ImportFrom) for alias in node.names
    }
    if class_name not in defined | imported:
        found = ", ".join(sorted(defined)) or "none"
        raise ConfigError([f"{where}: {relative} defines no class {class_name!r} (classes there: {found})"])


def _pin_model(project: Project, api: RealtimeAPI) -> PinnedModel | None:
    if api.model is None:
        return None
    if api.model.startswith("models:/"):
        from shipyard.registry import resolve_model_ref

        resolved = resolve_model_ref(api.model)
        return PinnedModel(resolved.name, resolved.version, resolved.digest)
    directory = Path(project.directory).resolve()
    path = (directory / api.model).resolve()
    if not path.is_relative_to(directory):
        raise PathOutsideProject(f"{api.name}.model", api.model, str(directory))
    if not path.exists():
        raise ConfigError(
            [f"{project.source}: {api.name}.model: {api.model!r} does not exist in {directory}; fix the path"]
        )
    return PinnedModel(None, None, build_manifest(path).digest)


def files_digest(directory: Path, skip: frozenset[str] = frozenset()) -> str:
    """sha256 over every file's relative path and content (the spec file itself, and `skip`, excepted)."""
    total = hashlib.sha256()
    for path in _project_files(directory):
        relative = path.relative_to(directory).as_posix()
        if relative in _NOT_IN_DIGEST or relative in skip:
            continue
        total.update(relative.encode() + b"\0" + _file_digest(path).encode() + b"\n")
    return total.hexdigest()


def _project_files(directory: Path) -> Iterator[Path]:
    for path in sorted(directory.rglob("*")):
        parts = path.relative_to(directory).parts
        if any(part in _SKIPPED_DIRS for part in parts) or path.suffix in _SKIPPED_SUFFIXES:
            continue
        if path.is_file():
            yield path


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]


class SnapshotFailed(ShipyardError):
    status_code = 500

    def __init__(self, source: Path, target: Path, reason: str) -> None:
        super().__init__(
            f"cannot copy project {source} to {target}: {reason}; free disk space or fix permissions, then deploy again"
        )


def snapshot(release: Release, project: Project, releases_root: Path) -> Path:
    """The spec file of `release` inside a frozen copy of its project; made once per project content."""
    assert release.files_digest is not None, "only realtime APIs have snapshots"
    source = Path(project.directory)
    target = releases_root / release.files_digest[:16]
    if not target.is_dir():
        _copy_project(source, target)
    return _write_spec(release, target)


def _write_spec(release: Release, folder: Path) -> Path:
    spec_file = folder / spec_file_name(release.name, release.version)
    if not spec_file.exists():
        staging = folder / f".{spec_file.name}.{uuid.uuid4().hex}"
        staging.write_text(yaml.safe_dump([pinned_spec(release)], sort_keys=False))
        staging.rename(spec_file)
    return spec_file


def spec_file_name(api: str, version: str) -> str:
    return f"{api}-{version}.yaml"


def pinned_spec(release: Release) -> dict[str, Any]:
    """The spec with a registry reference pinned to the version it resolved to at deploy time."""
    spec = dict(release.spec)
    model = release.model
    if model is not None and model.name is not None:
        spec["model"] = f"models:/{model.name}:{model.version}"
    return spec


def _copy_project(source: Path, target: Path) -> None:
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
    try:
        for path in _project_files(source):
            destination = staging / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)
        staging.mkdir(parents=True, exist_ok=True)
        try:
            staging.rename(target)
        except OSError:
            if not target.is_dir():  # another deploy of the same content finished first otherwise
                raise
    except OSError as exc:
        raise SnapshotFailed(source, target, str(exc)) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
