"""What a killed process leaves behind (staging folders of downloads and checkouts, folders it was
deleting) and when such a leftover is safe to remove.

A staging folder's name carries the host and process id of its writer. On the same host, one whose
process is gone is abandoned at once; one written from another host (a shared disk) or named without
an owner is abandoned once nothing in it has changed for STALE_AFTER seconds. The next operation that
stages beside it removes it.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
import uuid
from pathlib import Path

from shipyard.registry.artifacts import STALE_AFTER, remove_tree


def staging_path(target: Path, purpose: str) -> Path:
    """A hidden folder beside `target` to gather files in before renaming it to `target`."""
    return target.with_name(f".{target.name}.{purpose}-{_this_owner()}-{uuid.uuid4().hex}")


def sweep(folder: Path, purpose: str, now: float | None = None) -> int:
    """Remove the abandoned `purpose` staging folders (and files) in `folder`; how many were removed."""
    moment = time.time() if now is None else now
    removed = 0
    with contextlib.suppress(OSError):
        for path in folder.glob(f".*.{purpose}-*"):
            if is_abandoned(path, purpose, moment):
                if path.is_dir() and not path.is_symlink():
                    remove_tree(path)
                else:
                    path.unlink(missing_ok=True)
                removed += 1
    return removed


def is_abandoned(path: Path, purpose: str, now: float) -> bool:
    owner = _owner_of(path.name, purpose)
    if owner is not None and owner[0] == socket.gethostname():
        return not _is_running(owner[1])
    return _last_change(path) < now - STALE_AFTER


def _this_owner() -> str:
    return f"{socket.gethostname()}~{os.getpid()}"  # a host name never holds "~"


def _owner_of(name: str, purpose: str) -> tuple[str, int] | None:
    """(host, pid) from a name made by `staging_path`: `.<target>.<purpose>-<host>~<pid>-<hex>`."""
    found = re.match(rf"^.*\.{re.escape(purpose)}-(?P<host>[^~]*)~(?P<pid>[0-9]+)-[0-9a-f]{{32}}$", name)
    return (found["host"], int(found["pid"])) if found else None


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _last_change(path: Path) -> float:
    """The newest modification time of `path` and everything in it (a download in progress keeps writing)."""
    newest = 0.0
    with contextlib.suppress(OSError):
        newest = path.lstat().st_mtime
        if path.is_dir() and not path.is_symlink():
            for item in path.rglob("*"):
                with contextlib.suppress(OSError):
                    newest = max(newest, item.lstat().st_mtime)
    return newest
