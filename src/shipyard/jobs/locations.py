"""Where a job reads and writes: fsspec URLs that every process of the job sees alike.

A job runs in several processes (the submitting command, the runner, each worker), so a filesystem that
lives inside one process, such as fsspec's `memory://`, would read as empty in the others and lose
every part a worker writes. Such locations are refused at submit, for inputs and output alike.
"""

from __future__ import annotations

import os
from typing import Any

import fsspec
from fsspec.implementations.memory import MemoryFileSystem

PROCESS_LOCAL_PROTOCOLS = frozenset({"memory"})
"""fsspec protocols whose files exist only in the process that wrote them."""


class UnusableLocation(ValueError):
    """The URL cannot name a job's files; `problem` and `remedy` complete a BadInput or BadOutput."""

    def __init__(self, problem: str, remedy: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.remedy = remedy


def open_location(url: str) -> tuple[Any, str]:
    """(filesystem, path) for `url`; a local path comes back normalised (no `..`, no `.`)."""
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ValueError, ImportError) as exc:
        remedy = "check the scheme and install its fsspec extra"
        raise UnusableLocation(f"is not a usable path or URL ({exc})", remedy) from None
    if is_process_local(url, fs):
        raise UnusableLocation(
            "lives in one process's memory (memory:// and the like), so the job's other processes would not see it",
            "use a local path or a shared store such as file://, s3:// or gs://",
        )
    return fs, (os.path.normpath(path) if is_local(fs) else path)


def is_process_local(url: str, fs: Any) -> bool:
    protocols = {segment.split("://", 1)[0] for segment in url.split("::") if "://" in segment}
    if protocols & PROCESS_LOCAL_PROTOCOLS:
        return True
    for _ in range(8):  # cache layers (simplecache::...) wrap the filesystem that holds the files
        if isinstance(fs, MemoryFileSystem):
            return True
        inner = getattr(fs, "fs", None)
        if inner is None or inner is fs:
            return False
        fs = inner
    return False


def is_local(fs: Any) -> bool:
    protocol = fs.protocol
    return "file" in (protocol if isinstance(protocol, tuple | list) else (protocol,))


ITEMS_FILE = "items.jsonl"
"""The job's copy of the records given with `--items`, in its folder under SHIPYARD_HOME/jobs/JOB/."""


def source_label(url: str, job_id: str) -> str:
    """How dead letters name their input: its URL, or `--items` for the job's copy of the given records
    (then `_row` is the record's index in the list)."""
    path = os.path.normpath(url)
    return (
        "--items" if os.path.basename(path) == ITEMS_FILE and os.path.basename(os.path.dirname(path)) == job_id else url
    )
