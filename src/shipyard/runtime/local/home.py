"""The daemon's files in SHIPYARD_HOME: its token, lock, pid and address, the logs and the release snapshots."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from shipyard.errors import ShipyardError


class DaemonAlreadyRunning(ShipyardError):
    status_code = 409

    def __init__(self, home: Path, pid: int | None) -> None:
        who = f" (pid {pid})" if pid else ""
        super().__init__(
            f"a Shipyard daemon already runs for SHIPYARD_HOME {home}{who}; "
            "use it, or stop it first with `shipyard down`"
        )


@dataclass(frozen=True)
class Address:
    """Where a running daemon listens; written by the daemon once both servers are bound."""

    pid: int
    url: str
    gateway_url: str
    started_at: float


@dataclass(frozen=True)
class Home:
    root: Path

    @property
    def token_file(self) -> Path:
        return self.root / "token"

    @property
    def pid_file(self) -> Path:
        return self.root / "daemon.pid"

    @property
    def address_file(self) -> Path:
        return self.root / "daemon.json"

    @property
    def lock_file(self) -> Path:
        return self.root / "daemon.lock"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def daemon_log(self) -> Path:
        return self.logs / "daemon.log"

    @property
    def releases(self) -> Path:
        return self.root / "releases"

    def token(self) -> str:
        """The control API's token, created (readable by its owner only) on first use."""
        self.root.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            return self.token_file.read_text().strip()
        token = secrets.token_urlsafe(32)
        descriptor = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(token)
        return token

    def read_token(self) -> str | None:
        try:
            return self.token_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    def lock(self) -> IO[str]:
        """Hold the daemon lock for as long as the returned file stays open; the OS frees it if we die."""
        self.root.mkdir(parents=True, exist_ok=True)
        file = open(self.lock_file, "a+")  # noqa: SIM115 - held open for the daemon's whole life
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            raise DaemonAlreadyRunning(self.root, self.running_pid()) from None
        return file

    def is_locked(self) -> bool:
        """Whether a live daemon holds the lock."""
        if not self.lock_file.exists():
            return False
        with open(self.lock_file, "a+") as file:
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(file, fcntl.LOCK_UN)
            return False

    def running_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def write_address(self, address: Address) -> None:
        self.pid_file.write_text(f"{address.pid}\n")
        staging = self.address_file.with_suffix(".tmp")
        staging.write_text(json.dumps(asdict(address)))
        staging.rename(self.address_file)

    def read_address(self) -> Address | None:
        try:
            return Address(**json.loads(self.address_file.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None

    def clear_address(self) -> None:
        for path in (self.address_file, self.pid_file):
            path.unlink(missing_ok=True)
