"""Content-addressed blobs: each file is stored once under its sha256 in a local folder or any fsspec URL.

Every write goes to a temporary name beside its final one and is renamed into place only once its bytes
hash to the expected digest (on a local disk, after they are synced), so a crash leaves at most a stray
temporary file, never a wrong blob; stray ones are swept when a blob is next written beside them, and
across a local store at most once every STALE_AFTER seconds, by the next upload. Every read hashes the
bytes as they stream and refuses a blob whose digest does not match, and uploading a file again replaces
a stored blob that was damaged: a local blob is hashed again on every upload; a remote one when it is
small (REMOTE_REHASH_MAX), else when its size differs or a read has flagged it damaged (a marker under
`damaged/`, written when the read can write).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from shipyard.registry.errors import (
    ArtifactIntegrityError,
    ArtifactMissing,
    ArtifactStoreUnavailable,
    UnsafeManifestPath,
    UploadChanged,
)
from shipyard.registry.manifest import CHUNK, FileEntry, Manifest

log = logging.getLogger("shipyard.registry")

TEMPORARY_MARK = ".tmp-"
STALE_AFTER = 3600.0
"""Seconds after which a temporary upload file nobody writes to any more is removed."""
REMOTE_REHASH_MAX = 64 * 1024 * 1024
"""A remote blob up to this size is downloaded and hashed again when its file is uploaded again."""
_SWEPT = ".swept"
"""A local store's file whose age says when its temporary files were last swept."""


@dataclass(frozen=True)
class UploadReport:
    stored: int
    """Files written to the store."""
    reused: int
    """Files the store already held (identical content is stored once)."""
    repaired: int = 0
    """Files the store held damaged (their bytes no longer matched their name) and now holds whole."""


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
        self._is_local = isinstance(fs, LocalFileSystem)

    def blob_path(self, sha256: str) -> str:
        return f"{self._root}/blobs/sha256/{sha256[:2]}/{sha256}"

    def has(self, sha256: str) -> bool:
        return bool(self._fs.exists(self.blob_path(sha256)))

    def upload(self, source: str | os.PathLike[str], manifest: Manifest) -> UploadReport:
        """Store every file of the model at `source` (a file or a folder) that the store lacks or holds
        damaged: registering a model again repairs a blob whose bytes no longer match its name."""
        root = Path(source)
        counts = {"absent": 0, "whole": 0, "damaged": 0}
        self._sweep_store()
        for entry in manifest.files:
            state = self._state(entry)
            counts[state] += 1
            if state != "whole":
                self._put(root if root.is_file() else root / entry.path, entry)
        return UploadReport(counts["absent"] + counts["damaged"], counts["whole"], counts["damaged"])

    def _state(self, entry: FileEntry) -> str:
        """absent, whole or damaged. A local blob is hashed again (as cheap as the hashing of the source
        that precedes it), and so is a small remote one; a big remote one is compared by size (which
        catches truncation without a download) and is damaged when a read flagged it so."""
        path = self.blob_path(entry.sha256)
        try:
            if self._is_local or entry.size <= REMOTE_REHASH_MAX:
                return "whole" if self.check(entry) == entry.sha256 else "damaged"
            if int(self._fs.size(path)) != entry.size or self._fs.exists(self._damage_mark(entry.sha256)):
                return "damaged"
            return "whole"
        except (ArtifactMissing, FileNotFoundError):
            return "absent"

    def _damage_mark(self, sha256: str) -> str:
        return f"{self._root}/damaged/sha256/{sha256}"

    def _flag_damaged(self, entry: FileEntry) -> None:
        """Remember on a remote store that a read found this blob damaged, so that the next upload of its
        file replaces it even when a hash of the stored bytes is too costly to take there."""
        if self._is_local:
            return
        try:
            with self._fs.open(self._damage_mark(entry.sha256), "wb") as marker:
                marker.write(b"damaged")
        except Exception as exc:  # a reader without write access: the size check and small-blob hash remain
            log.warning("cannot flag the damaged blob sha256:%s in %s: %s", entry.sha256, self.location, exc)

    def _put(self, local: Path, entry: FileEntry) -> None:
        final = self.blob_path(entry.sha256)
        folder = final.rsplit("/", 1)[0]
        temporary = f"{final}{TEMPORARY_MARK}{uuid.uuid4().hex}"
        try:
            self._fs.makedirs(folder, exist_ok=True)
            self._sweep(folder)
            with open(local, "rb") as reader, self._fs.open(temporary, "wb") as writer:
                actual = _copy_hashing(reader, writer)
                if self._is_local:  # the bytes reach the disk before the name says they are there
                    writer.flush()
                    os.fsync(writer.fileno())
            if actual != entry.sha256:
                raise UploadChanged(str(local), entry.sha256, actual)
            self._rename(temporary, final)
            if not self._is_local:
                with contextlib.suppress(FileNotFoundError):
                    self._fs.rm(self._damage_mark(entry.sha256))
        except OSError as exc:
            raise self._unwritable(exc) from exc
        finally:
            with contextlib.suppress(OSError):
                if self._fs.exists(temporary):
                    self._fs.rm(temporary)

    def _rename(self, temporary: str, final: str) -> None:
        if not self._is_local:
            self._fs.mv(temporary, final)
            return
        os.replace(temporary, final)  # replaces a damaged blob in one step
        with contextlib.suppress(OSError):  # and the rename itself survives a power cut
            descriptor = os.open(os.path.dirname(final), os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)

    def _sweep(self, folder: str) -> None:
        """Remove temporary files a killed upload left in `folder` (one untouched for STALE_AFTER seconds:
        an upload in progress keeps writing to its own, so it is never taken for stale)."""
        if not self._is_local:
            return
        cutoff = time.time() - STALE_AFTER
        for path in Path(folder).glob(f"*{TEMPORARY_MARK}*"):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()

    def _sweep_store(self) -> None:
        """Sweep every blob folder of a local store, at most once every STALE_AFTER seconds (the age of
        the `.swept` file says when it was last done): bounded work, whoever uploads next."""
        if not self._is_local:
            return
        marker = Path(self._root) / _SWEPT
        with contextlib.suppress(OSError):
            if marker.exists() and marker.stat().st_mtime > time.time() - STALE_AFTER:
                return
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
            for folder in (Path(self._root) / "blobs" / "sha256").glob("??"):
                self._sweep(str(folder))

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
                self._flag_damaged(entry)
                raise ArtifactIntegrityError(entry.path, entry.sha256, actual, f"the artifact store {self.location}")
            os.replace(temporary, destination)
        finally:
            temporary.unlink(missing_ok=True)

    def check(self, entry: FileEntry) -> str:
        """The sha256 of the stored blob for `entry` (which the caller compares with `entry.sha256`)."""
        with self._open_blob(entry) as reader:
            actual = _copy_hashing(reader, None)
        if actual != entry.sha256:
            self._flag_damaged(entry)
        return actual

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
