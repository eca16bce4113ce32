"""A worker process: lease a batch, run the handler, write its parts, mark it done; repeat until drained.

    python -m shipyard.jobs.worker --job JOB --name NAME --runner-pid PID [--heartbeat FILE] [--lease-ttl 30]
    python -m shipyard.jobs.worker --job JOB --name NAME --runner-pid PID --hook   # on_job_complete(job) once

SIGTERM or SIGINT (and the runner's death) mean: finish the batch in hand, then exit. The runner's pid
comes as an argument, so a worker whose runner died while it was still starting sees it at once (its
parent is no longer that pid) and exits before it leases anything. A thread beats every third of the
lease's time: it touches the heartbeat file (the runner replaces a worker whose beat stops), renews the
lease in hand, and watches the runner. Exit codes: 0 drained, stopped or orphaned, 2 the handler or
model does not load (the job records why), 1 anything else.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import resource
import signal
import sys
import threading
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

import pyarrow as pa
from sqlalchemy import Engine

from shipyard.errors import ShipyardError
from shipyard.jobs import codec, misfits, queue, records
from shipyard.jobs.locations import source_label
from shipyard.jobs.misfits import Misfits
from shipyard.jobs.output import OutputFolder, encode, encode_records, failed_name, part_name, prepare
from shipyard.jobs.queue import Lease, Outcome
from shipyard.jobs.scoring import (
    BatchFailed,
    RowByRow,
    Scored,
    dead_letters,
    describe,
    output_table,
    score_table,
)
from shipyard.jobs.states import ACTIVE, EXIT_LOAD_FAILED, JobState, Mode
from shipyard.serving.handler import BoundHandler, HandlerRef, construct, import_handler_class
from shipyard.settings import Settings
from shipyard.spec import BatchAPI
from shipyard.store import create_store_engine, write_transaction

log = logging.getLogger("shipyard.jobs.worker")


def handler_ref(job: dict[str, Any]) -> tuple[BatchAPI, HandlerRef]:
    api = BatchAPI.model_validate(job["spec"])
    return api, HandlerRef(api.handler, Path(job["project"]))


def load_handler(job: dict[str, Any]) -> BoundHandler:
    api, ref = handler_ref(job)
    handler_class = import_handler_class(ref)
    options: dict[str, Any] = {}
    if api.is_builtin_handler and api.input_schema is not None:
        options["feature_names"] = list(api.input_schema.fields)
    return construct(handler_class, ref, api.config, model_folder(job, api), **options)


def model_folder(job: dict[str, Any], api: BatchAPI) -> str | None:
    """The model folder the job recorded; a registry model's copy is verified again (and rebuilt from the
    artifact store when it was changed) before every load, so nothing loads from altered files."""
    if job["model_path"] is None or not (api.model or "").startswith("models:/"):
        return job["model_path"]  # type: ignore[no-any-return]
    from shipyard.registry import verify_model_folder

    return str(verify_model_folder(job["model_path"], job["model_digest"]))


class LeaseLost(Exception):
    """Another worker holds the batch now (this one's lease expired): drop it, do not write it."""


class Pulse(threading.Thread):
    """Every ttl/3, for the worker's whole life: touch the heartbeat file, renew the lease in hand, and
    notice the runner's death (then the worker finishes its batch and exits; it exits at once while it
    is still loading the handler, which may take long and holds nothing)."""

    def __init__(self, engine: Engine, ttl: float, heartbeat: Path | None, runner_pid: int) -> None:
        super().__init__(name="pulse", daemon=True)
        self.engine, self.ttl, self.heartbeat, self.runner_pid = engine, ttl, heartbeat, runner_pid
        self.held: Lease | None = None
        self.lost: set[str] = set()
        """Tokens of leases that could not be renewed."""
        self.loading = True
        self.orphaned = threading.Event()
        self._done = threading.Event()

    def run(self) -> None:
        self.beat()
        while not self._done.wait(self.ttl / 3):
            self.beat()
            if runner_gone(self.runner_pid):
                self.orphaned.set()
                if self.loading:
                    log.info("the runner (pid %d) is gone; exiting before any batch", self.runner_pid)
                    os._exit(0)
            self._renew()

    def _renew(self) -> None:
        held = self.held
        if held is None or held.token in self.lost:
            return
        try:
            if not queue.renew(self.engine, held, self.ttl):
                self.lost.add(held.token)
        except Exception:  # the store is unreachable for now: the next beat tries again (the pulse must live on)
            log.warning("renewing the lease of batch %d failed", held.seq, exc_info=True)

    def beat(self) -> None:
        if self.heartbeat is None:
            return
        try:
            self.heartbeat.touch()
        except OSError:
            log.warning("cannot touch the heartbeat file %s", self.heartbeat, exc_info=True)

    def stop(self) -> None:
        self._done.set()


def runner_gone(runner_pid: int) -> bool:
    """Whether the process that started this worker is gone: the worker's parent is no longer it."""
    return os.getppid() != runner_pid


class Worker:
    def __init__(self, engine: Engine, job_id: str, name: str, pulse: Pulse, poll: float = 0.1) -> None:
        self.engine = engine
        self.job_id = job_id
        self.name = name
        self.pulse = pulse
        self.lease_ttl = pulse.ttl
        self.poll = poll
        self.should_exit = threading.Event()

    def run(self) -> int:
        job = records.get(self.engine, self.job_id)
        try:
            handler = load_handler(job)
        except ShipyardError as exc:
            self._record_load_failure(exc.message)
            return EXIT_LOAD_FAILED
        self.pulse.loading = False
        # imports and model live as long as the process: keep their objects out of every collection,
        # which otherwise walk them again and again while batches allocate (half the records path's time)
        gc.freeze()
        self.job = job
        self.handler = handler
        self.folder = OutputFolder(job["output"])
        self.sources = [source_label(source["url"], self.job_id) for source in job["inputs"]]
        self.is_builtin = handler_ref(job)[0].is_builtin_handler
        log.info("%s ready for job %s", self.name, self.job_id)
        while self._job_wants_work():
            held = queue.lease(self.engine, self.job_id, self.name, self.lease_ttl, job["max_retries"])
            if held is not None:
                self._run_batch(held)
            elif self._is_drained():
                break  # at once: the runner finishes the job when its workers have exited
            else:
                self.should_exit.wait(self.poll)
        log.info("%s exits (peak memory %d MB)", self.name, peak_memory_mb())
        return 0

    def _record_load_failure(self, message: str) -> None:
        log.error("%s", message)
        with write_transaction(self.engine) as connection:
            if JobState(records.read(connection, self.job_id)["state"]) not in ACTIVE:
                return  # the job already ended (another worker's failure ended it): nothing to add
            records.set_values(connection, self.job_id, error=message)
            records.add_event(connection, self.job_id, f"{self.name} could not load the handler: {message}")

    def _job_wants_work(self) -> bool:
        """False once told to stop, the runner is gone, or the job is stopping or over."""
        if self.should_exit.is_set() or self.pulse.orphaned.is_set() or runner_gone(self.pulse.runner_pid):
            return False
        job = records.get(self.engine, self.job_id)
        return not (job["stop_request"] or JobState(job["state"]).is_terminal)

    def _is_drained(self) -> bool:
        """Drain-and-exit: every batch is enqueued and done (a batch leased elsewhere may still come back)."""
        job = records.get(self.engine, self.job_id)
        return job["state"] == JobState.running and not queue.read_progress(self.engine, self.job_id).has_work

    def _run_batch(self, held: Lease) -> None:
        self.pulse.held = held
        try:
            outcome = self._outcome(held)
        finally:
            self.pulse.held = None
        if outcome is None:
            return
        if held.token in self.pulse.lost or not queue.complete(self.engine, held, outcome):
            log.warning("batch %d: lease lost while running; another worker redoes it", held.seq)
            return
        log.info("batch %d done: %d rows, %d dead-lettered", held.seq, outcome.ok_rows, outcome.failed_rows)

    def _outcome(self, held: Lease) -> Outcome | None:
        """Score and write the batch; None when it failed (back to the queue) or its lease was lost."""
        table, marked = misfits.take(codec.decode(held.payload))
        try:
            return self._write(held, table, self._score(held, table, marked), marked)
        except BatchFailed as exc:
            log.warning("batch %d failed (attempt %d): %s", held.seq, held.attempt, exc.error)
            queue.fail(self.engine, held, exc.error)
        except LeaseLost:
            log.warning("batch %d: lease lost while running row by row; another worker redoes it", held.seq)
        return None

    def _score(self, held: Lease, table: pa.Table, marked: Misfits) -> Scored:
        if held.mode is Mode.dead:
            error = (
                f"not run: workers died on this batch {held.failures} times, outside any one row ({held.last_error})"
            )
            return Scored(errors=dict.fromkeys(range(table.num_rows), error) | marked.errors)
        rows = None
        if held.mode is Mode.rows:
            log.info("batch %d failed %d times; running its rows one by one", held.seq, held.failures)
            rows = RowByRow(self._not_run_again(held), lambda index: self._advance(held, index))
        return score_table(self.handler, table, held.mode, self.is_builtin, rows, marked.errors)

    @staticmethod
    def _not_run_again(held: Lease) -> dict[int, str]:
        return {
            index: f"not run again: the worker died on this row ({why})" for index, why in held.crashed_rows.items()
        }

    def _advance(self, held: Lease, index: int) -> None:
        if not queue.advance(self.engine, held, index, self.lease_ttl):
            raise LeaseLost()

    def _write(self, held: Lease, table: pa.Table, scored: Scored, marked: Misfits) -> Outcome:
        try:
            return self._write_parts(held, table, scored, marked)
        except OSError as exc:
            raise BatchFailed(f"writing the batch's output failed: {describe(exc)}") from exc

    def _write_parts(self, held: Lease, table: pa.Table, scored: Scored, marked: Misfits) -> Outcome:
        part = failed_part = dead_payload = part_schema = dead_errors = None
        if scored.ok:
            fmt = self.job["format"]
            rows = prepare(output_table(table, scored, self.job["id_column"]), fmt)
            part = self.folder.write(part_name(held.seq, held.attempt, fmt), encode(rows, fmt), rows.num_rows)
            part_schema = rows.schema.serialize().to_pybytes()
        if scored.errors:
            numbers = [held.row_number(i) for i in range(table.num_rows)]
            letters, dead = dead_letters(table, scored, numbers, self.sources[held.source_index], marked)
            failed_part = self.folder.write(failed_name(held.seq, held.attempt), encode_records(letters), len(letters))
            dead_payload = codec.encode(dead)
            dead_errors = dict(Counter(scored.errors.values()))
        return Outcome(
            len(scored.ok),
            len(scored.errors),
            part,
            failed_part,
            dead_payload=dead_payload,
            dead_errors=dead_errors,
            part_schema=part_schema,
        )


def peak_memory_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # Linux reports KiB


def run_hook(engine: Engine, job_id: str) -> int:
    """Call the handler's on_job_complete(job) once, with the job as JobInfo; record how it went."""
    from shipyard.jobs.service import info

    job = records.get(engine, job_id)
    state, message = "done", "on_job_complete ran"
    try:
        _, ref = handler_ref(job)
        if callable(getattr(import_handler_class(ref), "on_job_complete", None)):
            load_handler(job).instance.on_job_complete(info(engine, job_id))
        else:
            message = ""
    except Exception as exc:  # the user's hook: whatever it raises is reported, the job's state stays
        log.exception("on_job_complete failed")
        state, message = "failed", f"on_job_complete raised {describe(exc)}"
    with write_transaction(engine) as connection:
        records.set_values(connection, job_id, hook_state=state)
        if message:
            records.add_event(connection, job_id, message)
    return 0 if state == "done" else 1


def _drain_on_signal(worker_exit: threading.Event) -> None:
    def handle(sig: int, frame: FrameType | None) -> None:
        worker_exit.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shipyard.jobs.worker")
    parser.add_argument("--job", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--runner-pid", type=int, required=True, help="The runner that started this worker.")
    parser.add_argument("--heartbeat", type=Path, help="A file to touch every third of the lease's time.")
    parser.add_argument("--lease-ttl", type=float, default=30.0)
    parser.add_argument("--hook", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s %(levelname)s {args.name}: %(message)s", stream=sys.stderr
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if runner_gone(args.runner_pid):  # it died while this process started: nobody would watch it
        log.info("the runner (pid %d) is gone; exiting before any batch", args.runner_pid)
        return 0
    engine = create_store_engine(Settings.from_env().database_url)
    try:
        if args.hook:
            return run_hook(engine, args.job)
        pulse = Pulse(engine, args.lease_ttl, args.heartbeat, args.runner_pid)
        worker = Worker(engine, args.job, args.name, pulse)
        _drain_on_signal(worker.should_exit)
        pulse.start()
        try:
            return worker.run()
        finally:
            pulse.stop()
    finally:
        engine.dispose()
        gc.freeze()  # the interpreter's final collections walk every module's objects: ~0.8 s with sklearn


if __name__ == "__main__":
    sys.exit(main())
