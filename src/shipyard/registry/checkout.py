"""A verified local copy of a version's files, the folder a replica or a batch worker loads its model from.

Copies live under `<home>/models/<digest hex>` and are checked file by file against the manifest on every
checkout; a copy that differs in any way (a changed, missing or extra file) is discarded and rebuilt
from the blobs, which are themselves verified as they are copied.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from shipyard.registry import leftovers
from shipyard.registry.artifacts import ArtifactStore, remove_tree
from shipyard.registry.errors import ArtifactIntegrityError
from shipyard.registry.manifest import Manifest, file_sha256

ABSENT = "(absent)"
log = logging.getLogger("shipyard.registry")


@dataclass(frozen=True)
class Difference:
    path: str
    expected: str
    """The sha256 the manifest records, or ABSENT for a file that is not part of the version."""
    actual: str
    """The sha256 found on disk, or ABSENT for a missing file."""


def checkout(store: ArtifactStore, manifest: Manifest, cache_root: Path) -> Path:
    """The verified folder holding the files of `manifest`, built from `store` when needed."""
    return refresh(store, manifest, cache_root / manifest.digest.removeprefix("sha256:"))


def refresh(store: ArtifactStore, manifest: Manifest, target: Path) -> Path:
    """`target` once it holds exactly the files of `manifest`: kept when it already does, else rebuilt
    from `store`. Raises ArtifactIntegrityError (naming the file and both digests) when a blob fails."""
    if target.is_dir():
        found = differences(target, manifest)
        if not found:
            return target
        first = found[0]
        log.warning(
            "the local copy %s differs from its manifest (%s: expected %s, found %s); rebuilding it from %s",
            target,
            first.path,
            first.expected,
            first.actual,
            store.location,
        )
        remove_tree(target)
    leftovers.sweep(target.parent, "staging")  # what a killed checkout left
    leftovers.sweep(target.parent, "trash")
    staging = leftovers.staging_path(target, "staging")
    try:
        store.materialize(manifest, staging)
        # when another process finished the same checkout first, the rename fails: verify and use theirs
        with contextlib.suppress(OSError):
            staging.rename(target)
    finally:
        remove_tree(staging)
    for found_one in differences(target, manifest):
        raise ArtifactIntegrityError(found_one.path, found_one.expected, found_one.actual, f"the local copy {target}")
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
