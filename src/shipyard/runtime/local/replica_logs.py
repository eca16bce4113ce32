"""Reading replicas' logs for `shipyard logs`: new text per replica since the caller's cursors.

A cursor is a byte offset per log file. A file seen for the first time gives its last 64 KiB. When
following, only whole lines are given (the cursor stops after the last newline), so a line the replica is
still writing is never split in two. A cursor past the end of its file means the log was rotated: reading
starts again from its beginning.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from shipyard.errors import BadRequest

TAIL_BYTES = 64 * 1024


def read_logs(
    folder: Path,
    replicas: Collection[str] | None,
    cursors: Mapping[str, int],
    *,
    whole_lines: bool = False,
) -> dict[str, Any]:
    """`{"chunks": [{"replica", "text"}], "cursors": {file: offset}}` for the logs of `replicas` (None: every
    log in `folder`, past replicas included), oldest first."""
    wanted = None if replicas is None else {f"{replica}.log" for replica in replicas}
    files = [path for path in folder.glob("*.log") if wanted is None or path.name in wanted]
    chunks, offsets = [], {}
    for path in sorted(files, key=_modified):
        text, offset = _read_from(path, cursors.get(path.name), whole_lines)
        offsets[path.name] = offset
        if text:
            chunks.append({"replica": path.stem, "text": text})
    return {"chunks": chunks, "cursors": offsets}


def check_replica(folder: Path, replica: str) -> None:
    if not (folder / f"{replica}.log").exists():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.log"))) or "none"
        raise BadRequest(f"replica {replica!r} has no log here (replicas with logs: {known}); see `shipyard get`")


def _read_from(path: Path, cursor: int | None, whole_lines: bool) -> tuple[str, int]:
    try:
        with open(path, "rb") as file:
            size = file.seek(0, 2)
            start = max(0, size - TAIL_BYTES) if cursor is None else int(cursor)
            if start > size:
                start = 0  # rotated under us: the file started over
            file.seek(start)
            data = file.read(size - start)
    except OSError:
        return "", int(cursor or 0)
    if whole_lines:
        data = data[: data.rfind(b"\n") + 1]
    return data.decode("utf-8", "replace"), start + len(data)


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
