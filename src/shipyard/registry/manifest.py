"""Manifests: the files of a model (relative path, sha256, size) and the one digest that names them all."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import orjson

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


def build_manifest(path: str | os.PathLike[str]) -> Manifest:
    """The manifest of a model file or of every regular file under a model directory."""
    root = Path(path)
    if root.is_file():
        return Manifest((FileEntry(root.name, file_sha256(root), root.stat().st_size),))
    if not root.is_dir():
        raise FileNotFoundError(f"model path {str(root)!r} does not exist")
    entries = [
        FileEntry(file.relative_to(root).as_posix(), file_sha256(file), file.stat().st_size)
        for file in sorted(root.rglob("*"))
        if file.is_file() and "__pycache__" not in file.parts
    ]
    return Manifest(tuple(entries))
