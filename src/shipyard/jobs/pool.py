"""The runner's side of one job's worker processes: start them, watch them, replace the ones that hang.

A worker is healthy while its heartbeat file is fresh (it beats every third of the lease's time), the
lease it holds has not expired, and its batch (row by row: its row) has not run longer than the API's
`batch_timeout`. Otherwise the runner kills it (SIGKILL also ends a stopped process), its attempt at
the batch counts as failed, and a new worker takes its place. A process that merely lives is not enough:
a SIGSTOPped worker lives forever, and a handler in an endless loop keeps its lease renewed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from shipyard.jobs.queue import Holding

STARTUP_GRACE = 60.0
"""Seconds a new worker has to beat for the first time (the interpreter starts and imports first)."""


@dataclass
class WorkerProcess:
    name: str
    process: subprocess.Popen[bytes]
    heartbeat: Path
    started: float
    hook: bool = False
    kill_reason: str | None = None
    """Why the runner killed it, if it did: the error its batch's attempt records."""
    overran: bool = False
    """The runner killed it because its batch (row by row: its row) ran past batch_timeout."""

    @property
    def is_alive(self) -> bool:
        return self.process.poll() is None

    def beat_age(self, now: float) -> float | None:
        try:
            return now - self.heartbeat.stat().st_mtime
        except FileNotFoundError:
            return None


def why_unhealthy(
    age: float, beat_age: float | None, holding: Holding | None, now: float, lease_ttl: float, batch_timeout: float
) -> str | None:
    """Why a live worker must be replaced, or None while it is healthy (see the module's docstring)."""
    if holding is not None and holding.expires_at < now:
        return f"it holds batch {holding.seq} past its lease's expiry (it is hung or stopped)"
    if overran(holding, now, batch_timeout):
        assert holding is not None
        what = (
            f"batch {holding.seq}" if holding.row_cursor is None else f"row {holding.row_cursor} of batch {holding.seq}"
        )
        return f"{what} ran longer than batch_timeout ({batch_timeout:g}s)"
    if beat_age is None:
        return None if age <= max(lease_ttl, STARTUP_GRACE) else f"it has not beaten once in {age:.0f}s"
    if beat_age > lease_ttl:
        return f"its heartbeat stopped {beat_age:.0f}s ago (it is hung or stopped)"
    return None


def overran(holding: Holding | None, now: float, batch_timeout: float) -> bool:
    """Whether the batch in hand (row by row: the row) has run longer than batch_timeout."""
    return holding is not None and holding.leased_at is not None and now - holding.leased_at > batch_timeout


class WorkerPool:
    def __init__(self, job_id: str, folder: Path, log_path: Path, lease_ttl: float, wake: threading.Event) -> None:
        self.job_id = job_id
        self.folder = folder
        self.log_path = log_path
        self.lease_ttl = lease_ttl
        self.wake = wake
        """Set when a worker exits, so the runner steps at once instead of at its next tick."""
        self.workers: list[WorkerProcess] = []

    def spawn(self, cwd: str, hook: bool = False) -> WorkerProcess:
        name = f"{'hook' if hook else 'worker'}-{uuid.uuid4().hex[:6]}"
        heartbeat = self.folder / "workers" / f"{name}.beat"
        heartbeat.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "shipyard.jobs.worker", "--job", self.job_id, "--name", name]
        command += ["--runner-pid", str(os.getpid()), "--heartbeat", str(heartbeat)]
        command += ["--hook"] if hook else ["--lease-ttl", str(self.lease_ttl)]
        with open(self.log_path, "ab") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy(), cwd=cwd)
        threading.Thread(target=self._watch, args=(process,), name=f"watch-{name}", daemon=True).start()
        worker = WorkerProcess(name, process, heartbeat, time.time(), hook)
        self.workers.append(worker)
        return worker

    def _watch(self, process: subprocess.Popen[bytes]) -> None:
        process.wait()
        self.wake.set()

    def reap(self) -> list[WorkerProcess]:
        """The workers that exited since the last call, now out of the pool."""
        exited = [worker for worker in self.workers if not worker.is_alive]
        for worker in exited:
            self.workers.remove(worker)
            worker.heartbeat.unlink(missing_ok=True)
        return exited

    def scoring(self) -> list[WorkerProcess]:
        """The live workers that score batches (not the on_job_complete hook)."""
        return [worker for worker in self.workers if not worker.hook and worker.is_alive]

    def alive(self) -> bool:
        return any(worker.is_alive for worker in self.workers)

    def unhealthy(
        self, holdings: list[Holding], batch_timeout: float, now: float
    ) -> list[tuple[WorkerProcess, str, bool]]:
        """(worker, why it must go, whether its batch or row overran batch_timeout) for each unhealthy worker."""
        held = {holding.owner: holding for holding in holdings}
        found = []
        for worker in self.scoring():
            if worker.kill_reason is None:
                reason = why_unhealthy(
                    now - worker.started,
                    worker.beat_age(now),
                    held.get(worker.name),
                    now,
                    self.lease_ttl,
                    batch_timeout,
                )
                if reason is not None:
                    found.append((worker, reason, overran(held.get(worker.name), now, batch_timeout)))
        return found

    def kill(self, worker: WorkerProcess, reason: str, overran: bool = False) -> None:
        worker.kill_reason, worker.overran = reason, overran
        worker.process.kill()

    def signal(self, sig: int) -> None:
        for worker in self.scoring():
            worker.process.send_signal(sig)

    def shutdown(self, timeout: float) -> list[WorkerProcess]:
        """Workers finish their batch (SIGTERM), then are killed after `timeout`; returns the killed ones."""
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        killed = []
        for worker in self.workers:
            try:
                worker.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
                killed.append(worker)
        return killed
