"""Content-addressed blobs: each file is stored once under its sha256 in a local folder or any fsspec URL.

Every write goes to a temporary name beside its final one and is renamed into place only once its bytes
hash to the expected digest, so a crash leaves at most a stray temporary file, never a wrong blob. Every
read hashes the bytes as they stream and refuses a blob whose digest does not match.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

import fsspec

from shipyard.registry.errors import (
    ArtifactIntegrityError,
    ArtifactMissing,
    ArtifactStoreUnavailable,
    UnsafeManifestPath,
    UploadChanged,
)
from shipyard.registry.manifest import CHUNK, FileEntry, Manifest


@dataclass(frozen=True)
class UploadReport:
    stored: int
    """Files written to the store."""
    reused: int
    """Files the store already held (identical content is stored once)."""


class ArtifactStore:
    """Blobs at `<location>/blobs/sha256/<2 hex>/<64 hex>`."""

    def __init__(self, location: str) -> None:
        self.location = shown_location(location)
        try:
            fs, root = fsspec.core.url_to_fs(location)
        except ImportError as exc:  # fsspec names the package to install: "Install s3fs to access S3"
            raise ArtifactStoreUnavailable(
                self.location, str(exc).splitlines()[0], "install that package, or set SHIPYARD_ARTIFACTS to a folder"
            ) from exc
        except ValueError as exc:
            raise ArtifactStoreUnavailable(
                self.location,
                str(exc).splitlines()[0],
                "set SHIPYARD_ARTIFACTS to a folder or an fsspec URL such as s3://bucket/path or gs://bucket/path",
            ) from exc
        self._fs: Any = fs
        self._root = root.rstrip("/")

    def blob_path(self, sha256: str) -> str:
        return f"{self._root}/blobs/sha256/{sha256[:2]}/{sha256}"

    def has(self, sha256: str) -> bool:
        return bool(self._fs.exists(self.blob_path(sha256)))

    def upload(self, source: str | os.PathLike[str], manifest: Manifest) -> UploadReport:
        """Store every file of the model at `source` (a file or a folder) that the store lacks."""
        root = Path(source)
        stored = reused = 0
        for entry in manifest.files:
            if self.has(entry.sha256):
                reused += 1
                continue
            local = root if root.is_file() else root / entry.path
            self._put(local, entry)
            stored += 1
        return UploadReport(stored, reused)

    def _put(self, local: Path, entry: FileEntry) -> None:
        final = self.blob_path(entry.sha256)
        temporary = f"{final}.tmp-{uuid.uuid4().hex}"
        try:
            self._fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
            with open(local, "rb") as reader, self._fs.open(temporary, "wb") as writer:
                actual = _copy_hashing(reader, writer)
            if actual != entry.sha256:
                raise UploadChanged(str(local), entry.sha256, actual)
            self._fs.mv(temporary, final)
        except OSError as exc:
            raise self._unwritable(exc) from exc
        finally:
            with contextlib.suppress(OSError):
                if self._fs.exists(temporary):
                    self._fs.rm(temporary)

    def _unwritable(self, exc: OSError) -> ArtifactStoreUnavailable:
        where = f" ({exc.filename})" if exc.filename else ""
        if isinstance(exc, FileExistsError | NotADirectoryError):
            problem = f"a file is in the way of a folder it needs{where}"
        else:
            problem = f"cannot be written: {exc.strerror or exc}{where}"
        return ArtifactStoreUnavailable(self.location, problem, "set SHIPYARD_ARTIFACTS to a folder you can write")

    def materialize(self, manifest: Manifest, destination: str | os.PathLike[str]) -> None:
        """Write the model's files under `destination`, each verified while it is copied."""
        target = Path(destination)
        for entry in manifest.files:
            self.fetch(entry, safe_join(target, entry.path))

    def fetch(self, entry: FileEntry, destination: Path) -> None:
        destination.parent.mkdir(parents=True, exist_ok=True)
        temporary = destination.with_name(f".{destination.name}.tmp-{uuid.uuid4().hex}")
        try:
            with self._open_blob(entry) as reader, open(temporary, "wb") as writer:
                actual = _copy_hashing(reader, writer)
            if actual != entry.sha256:
                raise ArtifactIntegrityError(entry.path, entry.sha256, actual, f"the artifact store {self.location}")
            os.replace(temporary, destination)
        finally:
            temporary.unlink(missing_ok=True)

    def check(self, entry: FileEntry) -> str:
        """The sha256 of the stored blob for `entry` (which the caller compares with `entry.sha256`)."""
        with self._open_blob(entry) as reader:
            return _copy_hashing(reader, None)

    def _open_blob(self, entry: FileEntry) -> IO[bytes]:
        try:
            return self._fs.open(self.blob_path(entry.sha256), "rb")  # type: ignore[no-any-return]
        except (FileNotFoundError, NotADirectoryError):
            raise ArtifactMissing(entry.path, entry.sha256, self.location) from None
        except OSError as exc:
            raise ArtifactStoreUnavailable(
                self.location,
                f"cannot be read: {exc.strerror or exc}",
                "check SHIPYARD_ARTIFACTS and your access to it",
            ) from exc


def shown_location(location: str) -> str:
    """The store's URL fit for messages: a password in it (`s3://key:secret@bucket`) is hidden."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/:@]*):[^/@]*@", r"\1:***@", location)


def _copy_hashing(reader: IO[bytes], writer: IO[bytes] | None) -> str:
    digest = hashlib.sha256()
    while chunk := reader.read(CHUNK):
        digest.update(chunk)
        if writer is not None:
            writer.write(chunk)
    return digest.hexdigest()


def safe_join(root: Path, relative: str) -> Path:
    """`root / relative`, refusing a manifest path that is absolute or climbs out of `root`."""
    parts = PurePosixPath(relative).parts
    if not parts or PurePosixPath(relative).is_absolute() or ".." in parts or "\\" in relative:
        raise UnsafeManifestPath(relative)
    return root.joinpath(*parts)


def remove_tree(path: Path) -> None:
    """Remove a folder by first renaming it aside, so no reader ever sees it half deleted."""
    aside = path.with_name(f".{path.name}.trash-{uuid.uuid4().hex}")
    try:
        path.rename(aside)
    except FileNotFoundError:
        return
    shutil.rmtree(aside, ignore_errors=True)
