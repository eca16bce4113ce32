"""Drives one job for its runner, one `step()` per tick: enqueue, keep workers running, stop, finish.

Every decision reads the job from the store first, so a driver that starts on a job another runner left
half done simply continues it: enqueuing resumes after the last stored batch, leases of dead workers
expire, and a finished job is finalized again (idempotently) if the runner died while finalizing.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from shipyard.jobs import queue, records
from shipyard.jobs.enqueuer import Enqueuer
from shipyard.jobs.finalize import finalize
from shipyard.jobs.schemas import declared_types
from shipyard.jobs.splitter import Source
from shipyard.jobs.states import EXIT_LOAD_FAILED, JobState, final_state, stop_state
from shipyard.spec import BatchAPI
from shipyard.store import write_transaction

log = logging.getLogger("shipyard.jobs.runner")


@dataclass(frozen=True)
class DriverOptions:
    lease_ttl: float = 30.0
    """Seconds a worker's batch lease lasts unless renewed (renewed every third of it)."""
    grace: float = 30.0
    """On stop or timeout, how long workers may take to finish the batch in hand before SIGKILL."""
    max_crashes: int = 5
    """Worker crashes in a row, with no batch finished in between, before the job fails."""


@dataclass
class WorkerProcess:
    name: str
    process: subprocess.Popen[bytes]
    hook: bool = False


@dataclass
class JobDriver:
    engine: Engine
    job_id: str
    home: Path
    options: DriverOptions = field(default_factory=DriverOptions)
    wake: threading.Event = field(default_factory=threading.Event)
    """Set when one of its worker processes exits, so the runner steps at once instead of at its tick."""
    workers: list[WorkerProcess] = field(default_factory=list)
    enqueuer: Enqueuer | None = None
    crashes: int = 0
    done_seen: int = -1
    stopping_since: float | None = None
    partial_written: bool = False
    finished: bool = False

    @property
    def log_path(self) -> Path:
        return job_dir(self.home, self.job_id) / "job.log"

    def step(self) -> None:
        job = records.get(self.engine, self.job_id)
        self._reap(job)
        state = JobState(job["state"])
        if state.is_terminal:
            self._after_end(job)
            return
        if state is JobState.pending:
            self._start(job)
            self._enqueue(job)  # split and start the workers now: their imports overlap the splitting
        elif job["stop_request"]:
            self._stop(job)
        elif self._timed_out(job):
            self._request_stop(JobState.timed_out, f"ran longer than its timeout of {job['timeout']:g}s")
        elif state is JobState.enqueuing:
            self._enqueue(job)
        else:
            self._run(job)

    # -- states ---------------------------------------------------------------------------------------------

    def _start(self, job: dict[str, Any]) -> None:
        with write_transaction(self.engine) as connection:
            records.transition(
                connection,
                self.job_id,
                JobState.enqueuing,
                f"splitting {len(job['inputs'])} input file(s) into batches of {job['batch_size']} rows",
                started_at=job["started_at"] or time.time(),
            )

    def _enqueue(self, job: dict[str, Any]) -> None:
        if self.enqueuer is None or (
            not self.enqueuer.is_alive() and not self.enqueuer.finished and not self.enqueuer.error
        ):
            sources = [Source(**source) for source in job["inputs"]]
            types = declared_types(BatchAPI.model_validate(job["spec"]))
            self.enqueuer = Enqueuer(self.engine, self.job_id, sources, job["batch_size"], types)
            self.enqueuer.start()
        if self.enqueuer.error:
            self._fail(self.enqueuer.error)
            return
        if self.enqueuer.finished:
            batches, rows = self.enqueuer.totals()
            with write_transaction(self.engine) as connection:
                records.transition(
                    connection,
                    self.job_id,
                    JobState.running,
                    f"all {rows} rows are in the queue as {batches} batches",
                    expect=[JobState.enqueuing],
                    total_batches=batches,
                    total_rows=rows,
                )
        self._keep_workers(job)

    def _run(self, job: dict[str, Any]) -> None:
        progress = queue.read_progress(self.engine, self.job_id)
        if progress.batches_done != self.done_seen:
            self.done_seen, self.crashes = progress.batches_done, 0
        if self.crashes > self.options.max_crashes:
            hint = f"see `shipyard jobs logs {self.job_id}`"
            self._fail(f"workers crashed {self.crashes} times in a row without finishing a batch; {hint}")
        elif progress.has_work:
            self._keep_workers(job)
        else:
            self._finish(job)

    def _finish(self, job: dict[str, Any]) -> None:
        state = final_state(queue.read_progress(self.engine, self.job_id).rows_failed)
        output, failed = finalize(self.engine, job, state, True, self._note)
        rows, dead = sum(p.rows for p in output), sum(p.rows for p in failed)
        reason = f"every batch is done: {rows} rows scored"
        if dead:
            reason += f", {dead} rows dead-lettered under {job['output'].rstrip('/')}/_failed/"
        self._end(state, reason)
        self._after_end(records.get(self.engine, self.job_id))  # no tick's wait between the end and the hook

    def _request_stop(self, state: JobState, reason: str) -> None:
        with write_transaction(self.engine) as connection:
            records.set_values(connection, self.job_id, stop_request=state.value)
            records.add_event(connection, self.job_id, f"stopping: {reason}")

    def _stop(self, job: dict[str, Any]) -> None:
        """Ask workers to finish their batch; once they are gone (or the grace ran out), end the job."""
        if self.enqueuer is not None:
            self.enqueuer.should_stop.set()
        now = time.time()
        if self.stopping_since is None:
            self.stopping_since = now
            self._signal_workers(signal.SIGTERM)
        if self._alive() and now - self.stopping_since > self.options.grace:
            self._signal_workers(signal.SIGKILL)
        if self._alive() or (self.enqueuer is not None and self.enqueuer.is_alive()):
            return
        queue.release_all(self.engine, self.job_id)
        state = stop_state(job["stop_request"])
        finalize(self.engine, job, state, False, self._note)  # a manifest of the parts kept, marked partial
        progress = queue.read_progress(self.engine, self.job_id)
        verb = "timed out" if state is JobState.timed_out else "stopped"
        done = f"{progress.batches_done} of {progress.batches} batches done"
        reason = f"{verb} with {done}; their parts are kept"
        self._end(state, reason)

    def _fail(self, reason: str) -> None:
        if self.enqueuer is not None:
            self.enqueuer.should_stop.set()
        self._signal_workers(signal.SIGTERM)
        self._end(JobState.failed, reason, error=reason)

    def _end(self, state: JobState, reason: str, **values: Any) -> None:
        job = records.get(self.engine, self.job_id)
        hook = None if job["spec"]["handler"] in ("sklearn", "onnx") else records.HOOK_PENDING
        with write_transaction(self.engine) as connection:
            records.transition(connection, self.job_id, state, reason, hook_state=hook, **values)
        log.info("job %s %s: %s", self.job_id, state.value, reason)

    def _after_end(self, job: dict[str, Any]) -> None:
        """The job is over: once its workers are gone, a failed job's partial manifest; the hook once; let go."""
        if job["state"] == JobState.failed and not self.partial_written and not self._alive():
            self.partial_written = True
            finalize(self.engine, job, JobState.failed, False, self._note)
        if job["hook_state"] != records.HOOK_PENDING:
            self.finished = not self._alive()
            return
        if not any(worker.hook for worker in self.workers) and not self._alive():
            self.workers.append(self._spawn(job, hook=True))

    def _timed_out(self, job: dict[str, Any]) -> bool:
        started, limit = job["started_at"], job["timeout"]
        return bool(limit and started and time.time() - started > limit)

    def _note(self, message: str) -> None:
        """A line in the job's log (beside its workers' output), as `jobs logs` shows it."""
        write_note(self.log_path, message)

    # -- worker processes -------------------------------------------------------------------------------------

    def _keep_workers(self, job: dict[str, Any]) -> None:
        missing = job["workers"] - len(self.workers)
        for _ in range(max(0, missing)):
            self.workers.append(self._spawn(job))

    def _spawn(self, job: dict[str, Any], hook: bool = False) -> WorkerProcess:
        name = f"{'hook' if hook else 'worker'}-{uuid.uuid4().hex[:6]}"
        command = [sys.executable, "-m", "shipyard.jobs.worker", "--job", self.job_id, "--name", name]
        command += ["--hook"] if hook else ["--lease-ttl", str(self.options.lease_ttl)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy(), cwd=job["project"]
            )
        threading.Thread(target=self._watch, args=(process,), name=f"watch-{name}", daemon=True).start()
        return WorkerProcess(name, process, hook)

    def _watch(self, process: subprocess.Popen[bytes]) -> None:
        process.wait()
        self.wake.set()

    def _reap(self, job: dict[str, Any]) -> None:
        for worker in [w for w in self.workers if w.process.poll() is not None]:
            self.workers.remove(worker)
            self._exited(job, worker, int(worker.process.returncode))

    def _exited(self, job: dict[str, Any], worker: WorkerProcess, code: int) -> None:
        if worker.hook:
            if code != 0 and records.get(self.engine, self.job_id)["hook_state"] == records.HOOK_PENDING:
                with write_transaction(self.engine) as connection:
                    records.set_values(connection, self.job_id, hook_state="failed")
                    records.add_event(
                        connection, self.job_id, f"on_job_complete's process exited with {_exit_text(code)}"
                    )
            return
        if code == 0:
            return
        queue.expire_owner(self.engine, self.job_id, worker.name)
        if code == EXIT_LOAD_FAILED and not JobState(job["state"]).is_terminal:
            error = records.get(self.engine, self.job_id)["error"] or "the handler could not be loaded"
            self._fail(error)
            return
        if job["stop_request"] or JobState(job["state"]).is_terminal:
            return
        self.crashes += 1
        with write_transaction(self.engine) as connection:
            records.add_event(
                connection,
                self.job_id,
                f"{worker.name} exited with {_exit_text(code)}; its batch goes back to the queue",
            )

    def _alive(self) -> bool:
        return any(worker.process.poll() is None for worker in self.workers)

    def _signal_workers(self, sig: int) -> None:
        for worker in self.workers:
            if worker.process.poll() is None and not worker.hook:
                worker.process.send_signal(sig)

    def shutdown(self, timeout: float) -> None:
        """The runner is leaving: workers finish their batch (SIGTERM), then are killed after `timeout`."""
        if self.enqueuer is not None:
            self.enqueuer.should_stop.set()
            self.enqueuer.join(timeout)
        self._signal_workers(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            try:
                worker.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()


def _exit_text(code: int) -> str:
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"code {code}"


def job_dir(home: Path, job_id: str) -> Path:
    return home / "jobs" / job_id


def write_note(path: Path, message: str, level: str = "INFO") -> None:
    """Append one line in the workers' log format: `2026-05-20 10:11:12,345 INFO runner: message`."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f",{int(now % 1 * 1000):03d}"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as log_file:  # append mode: lines of runner and workers interleave whole
        log_file.write(f"{stamp} {level} runner: {message}\n".encode())
