"""A real daemon per test: `shipyard up` on free loopback ports in the test's SHIPYARD_HOME, always stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from shipyard.client import Client
from shipyard.runtime.local.home import Home
from shipyard.runtime.local.supervisor import stray_replicas
from tests.serving.conftest import make_project
from tests.support import free_port


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.e2e)


def shipyard(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shipyard", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env if env is not None else os.environ.copy(),
    )


@dataclass
class Daemon:
    home: Home
    gateway: str
    root: Path
    client: Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = Client()

    def up(self) -> None:
        result = shipyard("up", "--tick", "0.2")
        assert result.returncode == 0, result.stderr

    def project(self, spec: str, name: str = "project") -> Path:
        return make_project(self.root / name, spec)

    def deploy(self, path: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return shipyard("deploy", str(path), *args)

    def pid(self) -> int:
        address = self.home.read_address()
        assert address is not None
        return address.pid

    def serve_processes(self) -> list[int]:
        return stray_replicas(self.home.releases, [])

    def wait_for(self, check: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.1)
        raise AssertionError(f"{what} not met within {timeout}s; daemon log:\n{self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return "\n".join(self.home.daemon_log.read_text().splitlines()[-30:])
        except FileNotFoundError:
            return "(no daemon log)"


@pytest.fixture
def daemon(shipyard_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemon]:
    gateway_port = free_port()
    monkeypatch.setenv("SHIPYARD_CONTROL_PORT", str(free_port()))
    monkeypatch.setenv("SHIPYARD_GATEWAY_PORT", str(gateway_port))
    found = Daemon(Home(shipyard_home), f"http://127.0.0.1:{gateway_port}", tmp_path)
    found.up()
    yield found
    found.client.close()
    shipyard("down", "--timeout", "20")
    pid = found.home.running_pid()
    if pid is not None and found.home.is_locked():
        os.kill(pid, signal.SIGKILL)
    for leftover in found.serve_processes():  # a test that killed the daemon leaves its replicas
        os.kill(leftover, signal.SIGKILL)


class Load:
    """Closed-loop traffic from a few threads; every status code is counted."""

    def __init__(self, url: str, body: dict[str, object], workers: int = 4) -> None:
        self.url = url
        self.body = body
        self.codes: Counter[int] = Counter()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(workers)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    @property
    def total(self) -> int:
        return sum(self.codes.values()) + len(self.errors)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                try:
                    code = client.post(self.url, json=self.body).status_code
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.errors.append(repr(exc))
                    continue
                with self._lock:
                    self.codes[code] += 1
