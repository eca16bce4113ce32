"""Lineage: where a version came from (data digests, code revision, Python and its packages, parent run).

The result is a plain JSON mapping; keys that have nothing to say are left out, so a governance rule such
as `has(candidate.lineage.data)` is true exactly when training data was recorded. `code_captured` is
always there and says whether `code` is: outside a git tree with no --code folder, nothing is known.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shipyard.errors import ShipyardError
from shipyard.registry.errors import UnreadablePath
from shipyard.registry.manifest import build_manifest, file_sha256

_SKIPPED_SOURCE_DIRS = {
    ".git",
    "__pycache__",
    ".venv",
    "venv",
    "node_modules",
    ".mypy_cache",
    ".pytest_cache",
}


class LineagePathMissing(ShipyardError):
    status_code = 400

    def __init__(self, what: str, path: str) -> None:
        super().__init__(f"{what} {path!r} does not exist; pass a file or folder that does")


def capture_lineage(
    data: Sequence[str | os.PathLike[str]] = (),
    code: str | os.PathLike[str] | None = None,
    parent_run_id: str | None = None,
) -> dict[str, Any]:
    lineage: dict[str, Any] = {"python": python_info(), "packages": installed_packages()}
    if data:
        lineage["data"] = [data_digest(path) for path in data]
    source = code_info(Path(code) if code is not None else None)
    lineage["code_captured"] = bool(source)
    if source:
        lineage["code"] = source
    if parent_run_id:
        lineage["parent_run_id"] = parent_run_id
    return lineage


def data_digest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The digest of a data file (its sha256) or folder (the digest of its manifest)."""
    target = Path(path)
    if target.is_file():
        try:
            digest = file_sha256(target)
        except OSError as exc:
            raise UnreadablePath("training data", str(target), f"cannot be read ({exc.strerror or exc})") from exc
        return {"path": str(target.resolve()), "digest": "sha256:" + digest, "size": target.stat().st_size, "files": 1}
    if target.is_dir():
        manifest = build_manifest(target, "training data")
        return {
            "path": str(target.resolve()),
            "digest": manifest.digest,
            "size": manifest.size,
            "files": len(manifest.files),
        }
    raise LineagePathMissing("training data", str(path))


def code_info(folder: Path | None) -> dict[str, Any]:
    """The git commit and dirty flag of `folder` (default: the current directory, when it is a git tree);
    for a folder given explicitly that is not under git, the digest of its source files.

    The tree is dirty when a tracked file changed or a file git does not ignore is new (an uncommitted
    training script is exactly what the flag is for)."""
    where = folder if folder is not None else Path.cwd()
    if folder is not None and not folder.is_dir():
        raise LineagePathMissing("code folder", str(folder))
    commit = _git(where, "rev-parse", "HEAD")
    if commit:
        dirty = bool(_git(where, "status", "--porcelain", "--untracked-files=normal"))
        return {"path": str(where.resolve()), "git_commit": commit, "git_dirty": dirty}
    if folder is None:
        return {}
    return {"path": str(folder.resolve()), "source_digest": source_digest(folder)}


def source_digest(folder: Path) -> str:
    """The manifest digest of a source tree, leaving out VCS, cache and virtualenv folders."""
    manifest = build_manifest(folder, "code folder")
    kept = tuple(entry for entry in manifest.files if not _SKIPPED_SOURCE_DIRS & set(entry.path.split("/")))
    return type(manifest)(kept).digest


def _git(folder: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def python_info() -> dict[str, str]:
    return {"version": platform.python_version(), "implementation": platform.python_implementation()}


def installed_packages() -> dict[str, str]:
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[name.lower()] = dist.version
    return dict(sorted(found.items()))
