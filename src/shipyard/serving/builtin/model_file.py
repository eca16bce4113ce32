"""Which file a built-in handler loads, and what a file's first bytes say it is.

The suffix decides how a file is loaded; the first bytes are checked against it, so that a pickle renamed
`model.bin` (or `model.skops`) is refused with a message that says what it really is, and never unpickled.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

ZIP_MAGIC = b"PK\x03\x04"
_COMPRESSED_MAGIC = (
    b"\x1f\x8b",
    b"\x78\x01",
    b"\x78\x5e",
    b"\x78\x9c",
    b"\x78\xda",
    b"BZh",
    b"\xfd7zXZ",
    b"\x04\x22M\x18",
)


class ModelFileProblem(Exception):
    """A model file that cannot be used; the message is the one line shown for the `model` key."""


def find_model_file(model_path: str | None, suffixes: Sequence[str], handler: str) -> Path:
    """The one file with one of `suffixes` at `model_path` (a file, or a folder holding exactly one)."""
    wanted = ", ".join(suffixes)
    if model_path is None:
        raise ModelFileProblem(
            f"handler {handler!r} needs a model: set `model:` to a {wanted} file or a folder with one"
        )
    path = Path(model_path)
    if path.is_file():
        if path.suffix not in suffixes:
            raise ModelFileProblem(_wrong_suffix(path, wanted, handler))
        return path
    found = sorted(p for p in path.iterdir() if p.suffix in suffixes and p.is_file()) if path.is_dir() else []
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise ModelFileProblem(
            f"handler {handler!r}: {what} model files ({wanted}) in {model_path!r}; point `model:` at exactly one file"
        )
    return found[0]


def looks_like_pickle(head: bytes) -> bool:
    """Pickle protocol 2+ starts with 0x80 and the protocol number; joblib also writes compressed pickles."""
    return (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5) or head.startswith(_COMPRESSED_MAGIC)


def read_head(path: Path, size: int = 8) -> bytes:
    with open(path, "rb") as file:
        return file.read(size)


def _wrong_suffix(path: Path, wanted: str, handler: str) -> str:
    try:
        head = read_head(path)
    except OSError:
        head = b""
    if looks_like_pickle(head):
        return (
            f"{path.name!r} looks like a pickle (joblib) file, which handler {handler!r} never loads under another "
            "name: loading a pickle runs code from the file. Save the model with skops (.skops), or, if you trust "
            "this file, rename it to .joblib and set config.allow_pickle: true"
        )
    return f"handler {handler!r} loads {wanted} files, got {path.name!r}; point `model:` at a model file"
