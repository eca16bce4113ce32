"""Start the daemon detached (its own session, logging to SHIPYARD_HOME/logs/daemon.log) and wait until it answers."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from shipyard.errors import ShipyardError
from shipyard.runtime.local.home import Address, Home

_TAIL_LINES = 5


class DaemonFailedToStart(ShipyardError):
    status_code = 500

    def __init__(self, reason: str, log: Path) -> None:
        super().__init__(f"the Shipyard daemon did not start: {reason}; see {log}")


def start_detached(home: Home, arguments: list[str], timeout: float = 30.0) -> Address:
    """Launch `shipyard up --foreground ARGUMENTS` in the background; return its address once it answers."""
    home.logs.mkdir(parents=True, exist_ok=True)
    offset = home.daemon_log.stat().st_size if home.daemon_log.exists() else 0
    command = [sys.executable, "-m", "shipyard", "up", "--foreground", *arguments]
    with open(home.daemon_log, "ab") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            raise DaemonFailedToStart(
                _last_lines(home.daemon_log, offset) or f"it exited with code {code}", home.daemon_log
            )
        address = home.read_address()
        if address is not None and address.pid == process.pid and _answers(address.url):
            return address
        time.sleep(0.05)
    process.kill()
    raise DaemonFailedToStart(f"it did not answer within {timeout:g}s", home.daemon_log)


def _answers(url: str) -> bool:
    try:
        httpx.get(f"{url}/v1/status", timeout=1.0)  # 401 without a token still proves it listens
    except httpx.HTTPError:
        return False
    return True


def _last_lines(log: Path, offset: int) -> str:
    try:
        with open(log, "rb") as file:
            file.seek(offset)
            text = file.read().decode("utf-8", "replace")
        lines = [line for line in text.splitlines() if line.strip()]
    except OSError:
        return ""
    errors = [line for line in lines[-50:] if line.startswith("error:") or " ERROR " in line]
    return " | ".join((errors or lines)[-_TAIL_LINES:])
