"""A verified local copy of a version's files, the folder a replica loads its model from.

Copies live under `<home>/models/<digest hex>` and are checked file by file against the manifest on every
checkout; a copy that differs in any way (a changed, missing or extra file) is discarded and rebuilt
from the blobs, which are themselves verified as they are copied.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from pathlib import Path

from shipyard.registry.artifacts import ArtifactStore, remove_tree
from shipyard.registry.errors import ArtifactIntegrityError
from shipyard.registry.manifest import Manifest, file_sha256

ABSENT = "(absent)"


@dataclass(frozen=True)
class Difference:
    path: str
    expected: str
    """The sha256 the manifest records, or ABSENT for a file that is not part of the version."""
    actual: str
    """The sha256 found on disk, or ABSENT for a missing file."""


def checkout(store: ArtifactStore, manifest: Manifest, cache_root: Path) -> Path:
    """The verified folder holding the files of `manifest`, built from `store` when needed."""
    target = cache_root / manifest.digest.removeprefix("sha256:")
    if target.is_dir():
        if not differences(target, manifest):
            return target
        remove_tree(target)
    staging = cache_root / f".staging-{target.name}-{uuid.uuid4().hex}"
    try:
        store.materialize(manifest, staging)
        # when another process finished the same checkout first, the rename fails: verify and use theirs
        with contextlib.suppress(OSError):
            staging.rename(target)
    finally:
        remove_tree(staging)
    for found in differences(target, manifest):
        raise ArtifactIntegrityError(found.path, found.expected, found.actual, f"the local copy {target}")
    return target


def differences(folder: Path, manifest: Manifest) -> list[Difference]:
    """Each way `folder` differs from `manifest`; empty when it matches exactly."""
    expected = {entry.path: entry.sha256 for entry in manifest.files}
    found = {path.relative_to(folder).as_posix() for path in folder.rglob("*") if not path.is_dir()}
    extra = [Difference(path, ABSENT, file_sha256(folder / path)) for path in sorted(found - expected.keys())]
    changed = [
        Difference(path, sha, file_sha256(folder / path) if path in found else ABSENT)
        for path, sha in sorted(expected.items())
    ]
    return extra + [item for item in changed if item.actual != item.expected]
