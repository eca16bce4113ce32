"""Manifests: the files of a model (relative path, sha256, size) and the one digest that names them all."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import orjson

from shipyard.registry.errors import UnreadablePath

CHUNK = 1024 * 1024


@dataclass(frozen=True, order=True)
class FileEntry:
    path: str
    """POSIX path relative to the model's root (the file's own name when the model is one file)."""
    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    files: tuple[FileEntry, ...]

    @property
    def digest(self) -> str:
        """sha256 over the sorted entries: equal for equal content, whatever the order files were found in."""
        return "sha256:" + hashlib.sha256(self.to_json()).hexdigest()

    @property
    def size(self) -> int:
        return sum(entry.size for entry in self.files)

    def to_json(self) -> bytes:
        rows = [[entry.path, entry.sha256, entry.size] for entry in sorted(self.files)]
        return orjson.dumps(rows)

    @classmethod
    def from_json(cls, data: bytes | str) -> Manifest:
        return cls(tuple(FileEntry(path, sha, size) for path, sha, size in orjson.loads(data)))


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def build_manifest(path: str | os.PathLike[str], what: str = "model path") -> Manifest:
    """The manifest of a model file or of every regular file under a model directory.

    Raises UnreadablePath (naming the path as `what`) for a path that is missing, is neither a regular
    file nor a folder (a device such as /dev/null, a pipe), or holds a file that cannot be read.
    """
    root = Path(path)
    try:
        if root.is_file():
            return Manifest((_entry(root, root.name),))
        if not root.exists():
            raise UnreadablePath(what, str(root), "does not exist")
        if not root.is_dir():
            raise UnreadablePath(what, str(root), "is neither a regular file nor a folder")
        files = sorted(file for file in root.rglob("*") if file.is_file() and "__pycache__" not in file.parts)
        return Manifest(tuple(_entry(file, file.relative_to(root).as_posix()) for file in files))
    except OSError as exc:
        raise UnreadablePath(what, str(exc.filename or root), f"cannot be read ({exc.strerror or exc})") from exc


def _entry(file: Path, relative: str) -> FileEntry:
    return FileEntry(relative, file_sha256(file), file.stat().st_size)
