"""Replicas' log files: reading them for `shipyard logs`, rotating them, finding why a process ended.

`read_logs` gives new text per replica since the caller's cursors, a byte offset per log file. A file
seen for the first time gives its last 64 KiB. When following, only whole lines are given (the cursor
stops after the last newline), so a line the replica is still writing is never split in two. A cursor
past the end of its file means the log was rotated: reading starts again from its beginning. A log
past 10 MiB is rotated in place; a crash's reason is the last fatal line its current process wrote.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from shipyard.errors import BadRequest

TAIL_BYTES = 64 * 1024
ROTATE_BYTES = 10 * 1024**2
"""A replica's log is rotated when it grows past this; the last `KEEP` rotations are kept."""
KEEP = 3
_ERROR_TAIL_BYTES = 16_384
_LOG_LINE = re.compile(r"^\S+ \S+ (ERROR|CRITICAL) (?P<message>.+)$")
_CLI_ERROR = re.compile(r"^error: (?P<message>.+)$")
_REQUEST_ERROR = re.compile(r"^(shipyard\.(engine|batcher): |shipyard\.http: request )")
"""Errors of one request (the engine's, the batcher's, the transport's per request): never why a process ended."""


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


def fatal_errors(lines: Iterable[str]) -> list[str]:
    """The log's startup and fatal errors (ERROR/CRITICAL lines, `error:` lines), not those of one request."""
    found = []
    for line in lines:
        match = _LOG_LINE.match(line) or _CLI_ERROR.match(line)
        if match is not None and not _REQUEST_ERROR.match(match["message"]):
            found.append(match["message"])
    return found


def log_tail(log: Path, since: int) -> list[str]:
    """The last lines of `log` written after offset `since` (what the current process wrote)."""
    try:
        with open(log, "rb") as file:
            size = file.seek(0, 2)
            file.seek(max(min(since, size), size - _ERROR_TAIL_BYTES))
            return file.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []


def rotate_log(log: Path, limit: int = ROTATE_BYTES, keep: int = KEEP) -> bool:
    """Copy a log past `limit` to `<log>.1` (older ones move up to `.<keep>`) and truncate it in place.

    The replica writes with O_APPEND to a file it holds open, so it goes on at the new end; lines it writes
    between the copy and the truncation are lost (logrotate's copytruncate makes the same trade).
    """
    if log_size(log) <= limit:
        return False
    for index in range(keep - 1, 0, -1):
        older = log.with_name(f"{log.name}.{index}")
        if older.exists():
            older.replace(log.with_name(f"{log.name}.{index + 1}"))
    shutil.copyfile(log, log.with_name(f"{log.name}.1"))
    with open(log, "r+b") as file:
        file.truncate(0)
    return True


def log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
