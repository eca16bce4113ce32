"""Checking a local copy that was checked out earlier (a batch job records its model's) just before a
process loads it: the copy may have been changed on disk since, and nothing is loaded from altered files.

Kept apart from the registry's composition root so that a batch worker pays for the store and the
artifact store only, not for the policy language.
"""

from __future__ import annotations

import os
from pathlib import Path

from shipyard.errors import ShipyardError
from shipyard.registry.artifacts import ArtifactStore
from shipyard.registry.checkout import refresh
from shipyard.registry.versions import manifest_of_digest
from shipyard.settings import Settings
from shipyard.store import create_store_engine, read_transaction


class NotACheckout(ShipyardError):
    status_code = 400

    def __init__(self, folder: Path, digest: str) -> None:
        super().__init__(
            f"model folder {str(folder)!r} is not the registry's local copy of {digest} (its name is not the "
            "digest); it is not loaded. Resolve the model reference again (submit the job again)"
        )


def verify_model_folder(folder: str | os.PathLike[str], digest: str, settings: Settings | None = None) -> Path:
    """`folder`, the local copy of the version whose manifest digest is `digest`, once every file in it
    matches that manifest again. A copy that differs is rebuilt from the artifact store's blobs (each
    verified as it is copied); when a blob fails too, ArtifactIntegrityError names the file and both
    digests and nothing is left to load. Raises UnknownDigest when no version has `digest` any more."""
    target = Path(folder)
    if target.name != digest.removeprefix("sha256:"):
        raise NotACheckout(target, digest)
    settings = settings or Settings.from_env()
    engine = create_store_engine(settings.database_url)
    try:
        with read_transaction(engine) as connection:
            manifest = manifest_of_digest(connection, digest)
    finally:
        engine.dispose()
    return refresh(ArtifactStore(settings.artifacts), manifest, target)
