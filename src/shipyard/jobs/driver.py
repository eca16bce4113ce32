"""Drives one job for its runner, one `step()` per tick: enqueue, keep healthy workers running, stop, finish.

Every decision reads the job from the store first, so a driver that starts on a job another runner left
half done simply continues it: enqueuing resumes after the last stored batch, leases of dead workers
expire, and a finished job is finalized again (idempotently) if the runner died while finalizing. What
the driver decides is an event in the store and a line in the job's log (`jobs logs`).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from shipyard.jobs import queue, records
from shipyard.jobs.enqueuer import Enqueuer
from shipyard.jobs.finalize import finalize
from shipyard.jobs.pool import WorkerPool, WorkerProcess
from shipyard.jobs.schemas import declared_types
from shipyard.jobs.splitter import Source
from shipyard.jobs.states import ACTIVE, EXIT_LOAD_FAILED, ROW_DEATHS, JobState, final_state, stop_state
from shipyard.jobs.view import batches_done_text, counted
from shipyard.spec import BatchAPI
from shipyard.store import write_transaction

log = logging.getLogger("shipyard.jobs.runner")
_DEFAULT_BATCH_TIMEOUT = 3600.0


@dataclass(frozen=True)
class DriverOptions:
    lease_ttl: float = 30.0
    """Seconds a worker's batch lease lasts unless renewed (renewed every third of it); a worker whose
    heartbeat is older than this is replaced."""
    grace: float = 30.0
    """On stop or timeout, how long workers may take to finish the batch in hand before SIGKILL."""
    max_crashes: int = 5
    """Worker crashes in a row, with no batch finished (and no bad row found) in between, before the job fails."""
    min_ahead: int = 32
    """The enqueuer stays at most max(this, 4 x workers) batches ahead of the workers."""


@dataclass
class JobDriver:
    engine: Engine
    job_id: str
    home: Path
    options: DriverOptions = field(default_factory=DriverOptions)
    wake: threading.Event = field(default_factory=threading.Event)
    """Set when one of its worker processes exits, so the runner steps at once instead of at its tick."""
    enqueuer: Enqueuer | None = None
    crashes: int = 0
    done_seen: int = -1
    stopping_since: float | None = None
    ended_since: float | None = None
    partial_written: bool = False
    finished: bool = False

    def __post_init__(self) -> None:
        self.pool = WorkerPool(
            self.job_id, job_dir(self.home, self.job_id), self.log_path, self.options.lease_ttl, self.wake
        )

    @property
    def log_path(self) -> Path:
        return job_dir(self.home, self.job_id) / "job.log"

    def step(self) -> None:
        job = records.get(self.engine, self.job_id)
        if self._reap(job):
            job = records.get(self.engine, self.job_id)  # an exit may have ended the job: never act on the old state
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

    def note(self, message: str) -> None:
        """A line in the job's log (beside its workers' output), as `jobs logs` shows it."""
        write_note(self.log_path, message)

    # -- states ---------------------------------------------------------------------------------------------

    def _start(self, job: dict[str, Any]) -> None:
        now = time.time()
        self._transition(
            JobState.enqueuing,
            f"splitting {len(job['inputs'])} input file(s) into batches of {job['batch_size']} rows",
            started_at=job["started_at"] or now,
            run_started_at=job["run_started_at"] or now,
        )

    def _enqueue(self, job: dict[str, Any]) -> None:
        if self.enqueuer is None or (
            not self.enqueuer.is_alive() and not self.enqueuer.finished and not self.enqueuer.error
        ):
            sources = [Source(**source) for source in job["inputs"]]
            types = declared_types(BatchAPI.model_validate(job["spec"]))
            ahead = max(self.options.min_ahead, 4 * job["workers"])
            self.enqueuer = Enqueuer(self.engine, self.job_id, sources, job["batch_size"], types, ahead)
            self.enqueuer.start()
        if self.enqueuer.error:
            self._fail(self.enqueuer.error)
            return
        if self.enqueuer.finished:
            batches, rows = self.enqueuer.totals()
            self._transition(
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
        output, failed = finalize(self.engine, job, state, True, self.note)
        rows, dead = sum(p.rows for p in output), sum(p.rows for p in failed)
        reason = f"every batch is done: {counted(rows, 'row')} scored"
        if dead:
            reason += f", {counted(dead, 'row')} dead-lettered under {job['output'].rstrip('/')}/_failed/"
        self._end(state, reason)
        self._after_end(records.get(self.engine, self.job_id))  # no tick's wait between the end and the hook

    def _request_stop(self, state: JobState, reason: str) -> None:
        with write_transaction(self.engine) as connection:
            records.set_values(connection, self.job_id, stop_request=state.value)
        self._event(f"stopping: {reason}")

    def _stop(self, job: dict[str, Any]) -> None:
        """Ask workers to finish their batch; once they are gone (or the grace ran out), end the job."""
        if self.enqueuer is not None:
            self.enqueuer.should_stop.set()
        now = time.time()
        if self.stopping_since is None:
            self.stopping_since = now
            self.pool.signal(signal.SIGTERM)
        if self.pool.scoring() and now - self.stopping_since > self.options.grace:
            self.note(f"workers still busy after {self.options.grace:g}s: killing them")
            self.pool.signal(signal.SIGKILL)
        if self.pool.scoring() or (self.enqueuer is not None and self.enqueuer.is_alive()):
            return
        queue.release_all(self.engine, self.job_id)
        state = stop_state(job["stop_request"])
        finalize(self.engine, job, state, False, self.note)  # a manifest of the parts kept, marked partial
        verb = "timed out" if state is JobState.timed_out else "stopped"
        self._end(state, f"{verb} with {self._done_text(job)}; their parts are kept")

    def _done_text(self, job: dict[str, Any]) -> str:
        progress = queue.read_progress(self.engine, self.job_id)
        return batches_done_text(progress.batches_done, progress.batches, job["total_batches"] is not None)

    def _fail(self, reason: str) -> None:
        if self.enqueuer is not None:
            self.enqueuer.should_stop.set()
        self.pool.signal(signal.SIGTERM)
        self._end(JobState.failed, reason, error=reason)

    def _end(self, state: JobState, reason: str, **values: Any) -> None:
        job = records.get(self.engine, self.job_id)
        hook = None if job["spec"]["handler"] in ("sklearn", "onnx") else records.HOOK_PENDING
        if self._transition(state, reason, expect=ACTIVE, hook_state=hook, **values):
            log.info("job %s %s: %s", self.job_id, state.value, reason)

    def _after_end(self, job: dict[str, Any]) -> None:
        """The job is over: once its workers are gone, a failed job's partial manifest; the hook once; let go."""
        self._drain_after_end()
        if job["state"] == JobState.failed and not self.partial_written and not self.pool.scoring():
            self.partial_written = True
            finalize(self.engine, job, JobState.failed, False, self.note)
        if job["hook_state"] != records.HOOK_PENDING:
            self.finished = not self.pool.alive()
            return
        if not any(worker.hook for worker in self.pool.workers) and not self.pool.alive():
            self.pool.spawn(job["project"], hook=True)

    def _drain_after_end(self) -> None:
        """Workers told to stop when the job failed get the same grace as on `jobs stop`, then SIGKILL."""
        if not self.pool.scoring():
            return
        now = time.time()
        self.ended_since = self.ended_since or now
        if now - self.ended_since > self.options.grace:
            self.note(f"workers still busy {self.options.grace:g}s after the job ended: killing them")
            self.pool.signal(signal.SIGKILL)

    def _timed_out(self, job: dict[str, Any]) -> bool:
        """Past the job's timeout, counted from the start of this run (a retry starts the clock again)."""
        started, limit = job["run_started_at"] or job["started_at"], job["timeout"]
        return bool(limit and started and time.time() - started > limit)

    def _transition(self, state: JobState, reason: str, expect: Any = None, **values: Any) -> bool:
        with write_transaction(self.engine) as connection:
            moved = records.transition(connection, self.job_id, state, reason, expect, **values)
        if moved:
            self.note(f"[{state.value}] {reason}")
        return moved

    def _event(self, message: str) -> None:
        with write_transaction(self.engine) as connection:
            records.add_event(connection, self.job_id, message)
        self.note(message)

    # -- worker processes -------------------------------------------------------------------------------------

    def _keep_workers(self, job: dict[str, Any]) -> None:
        """Replace workers that hang, then start as many as the job wants."""
        limit = float(job["spec"].get("batch_timeout") or _DEFAULT_BATCH_TIMEOUT)
        holdings = queue.holdings(self.engine, self.job_id)
        for worker, reason, overran in self.pool.unhealthy(holdings, limit, time.time()):
            self.pool.kill(worker, reason, overran)
            self._event(f"{worker.name} is killed and replaced: {reason}")
        for _ in range(max(0, job["workers"] - len(self.pool.scoring()))):
            self.pool.spawn(job["project"])

    def _reap(self, job: dict[str, Any]) -> bool:
        """Handle every worker that exited; True when any did (the job may have changed)."""
        exited = self.pool.reap()
        for worker in exited:
            self._exited(job, worker, int(worker.process.returncode))
        return bool(exited)

    def _exited(self, job: dict[str, Any], worker: WorkerProcess, code: int) -> None:
        if worker.hook:
            self._hook_exited(code)
            return
        how = f"was killed: {worker.kill_reason}" if worker.kill_reason else f"exited with {_exit_text(code)}"
        if job["stop_request"] or JobState(job["state"]).is_terminal:  # the runner stopped it: nobody's fault
            queue.release_owner(self.engine, self.job_id, worker.name)
            return
        deaths = ROW_DEATHS if worker.overran else 1
        blamed = queue.abandon(self.engine, self.job_id, worker.name, f"{worker.name} {how}", deaths)
        if code == EXIT_LOAD_FAILED and worker.kill_reason is None:
            self._fail(records.get(self.engine, self.job_id)["error"] or "the handler could not be loaded")
            return
        if code == 0 and not blamed:
            return  # drained: it finished its batches and found no more
        if any(blame.isolated for blame in blamed):  # finding the row that kills workers is progress
            self.crashes = 0
        else:
            self.crashes += 1
        held = f" while it held batch {blamed[0].seq}" if code == 0 and blamed else ""
        self._event(f"{worker.name} {how}{held}; {_requeued(blamed)}")

    def _hook_exited(self, code: int) -> None:
        if code != 0 and records.get(self.engine, self.job_id)["hook_state"] == records.HOOK_PENDING:
            with write_transaction(self.engine) as connection:
                records.set_values(connection, self.job_id, hook_state="failed")
            self._event(f"on_job_complete's process exited with {_exit_text(code)}")

    def shutdown(self, timeout: float) -> None:
        """The runner is leaving: workers finish their batch (SIGTERM), then are killed after `timeout`;
        whatever a worker still held goes back to the queue with no failure counted (the runner stopped it)."""
        if self.enqueuer is not None:
            self.enqueuer.should_stop.set()
            self.enqueuer.join(timeout)
        killed = {worker.name for worker in self.pool.shutdown(timeout)}
        for worker in self.pool.workers:
            seqs = [] if worker.hook else queue.release_owner(self.engine, self.job_id, worker.name)
            if seqs:
                how = f"was killed after the {timeout:g}s grace" if worker.name in killed else "exited"
                self._event(
                    f"the runner is stopping: {worker.name} {how} before it finished {_batches(seqs)}; "
                    "back to the queue, no failure counted"
                )


def _batches(seqs: list[int]) -> str:
    return f"batch {seqs[0]}" if len(seqs) == 1 else f"batches {', '.join(map(str, seqs))}"


def _requeued(blamed: list[queue.Blame]) -> str:
    if not blamed:
        return "it held no batch"
    isolated = next((blame.row for blame in blamed if blame.isolated), None)
    if isolated is not None:
        return f"row {isolated} of its batch is set aside as a dead letter (a worker died on it {ROW_DEATHS} times)"
    on_row = next((blame.row for blame in blamed if blame.row is not None), None)
    if on_row is not None:
        return f"it was on row {on_row} of its batch, which runs once more before it is set aside"
    return "its batch goes back to the queue"


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
