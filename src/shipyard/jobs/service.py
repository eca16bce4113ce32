"""Jobs over the store: submit, get, list, stop, retry, logs, wait, and the standalone runner's composition root.

These functions talk to the store directly, so they work with no daemon; the daemon's control API calls
them too. `shipyard.jobs` (sdk.py) picks the transport: the daemon when one serves this home, else these.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import SQLAlchemyError

from shipyard.errors import ConfigError
from shipyard.jobs import queue, records
from shipyard.jobs.driver import DriverOptions, job_dir, write_note
from shipyard.jobs.errors import (
    BadInput,
    BadJobOption,
    BadOutput,
    JobConflict,
    MissingColumns,
    MissingIdColumn,
    StoreFailed,
    UnconvertibleColumn,
)
from shipyard.jobs.finalize import finalize
from shipyard.jobs.locations import ITEMS_FILE
from shipyard.jobs.output import OutputFolder
from shipyard.jobs.request import JobRequest, is_seconds, option_error
from shipyard.jobs.runner import JobRunner, RunnerOptions
from shipyard.jobs.schemas import declared_types
from shipyard.jobs.splitter import Source, check, expand
from shipyard.jobs.states import ACTIVE, JobState
from shipyard.jobs.view import JobInfo, batches_done_text, counted, job_info, run_seconds
from shipyard.settings import Settings
from shipyard.spec import BatchAPI, Project, load
from shipyard.store import create_store_engine, migrate, read_transaction, write_transaction
from shipyard.store.tables import jobs as jobs_table

RUNNER_PID = "runner.pid"
RETRYABLE = (JobState.completed_with_failures, JobState.stopped, JobState.timed_out, JobState.failed)


@contextmanager
def open_store(settings: Settings | None = None) -> Iterator[Engine]:
    engine = create_store_engine((settings or Settings.from_env()).database_url)
    try:
        migrate(engine)
        yield engine
    finally:
        engine.dispose()


def submit(request: JobRequest, start_runner: bool = True) -> JobInfo:
    """Check everything that can be checked now (spec, handler, model, inputs, output), then queue the job;
    with `start_runner`, start a detached runner unless one (or the daemon) runs for this home."""
    job = enqueue(request, import_handler=True)
    if start_runner:
        ensure_runner(Settings.from_env())
    return job


def check_handler(request: JobRequest) -> None:
    """Import the BatchAPI's handler class, which runs the user's module: the caller does this in its own
    process before handing the job to the daemon, which never imports user code."""
    from shipyard.serving.handler import HandlerRef, import_handler_class

    project = load(request.project)
    api = _batch_api(project, request)
    import_handler_class(HandlerRef(api.handler, Path(project.directory)))


def enqueue(request: JobRequest, import_handler: bool) -> JobInfo:
    """Validate the request against its project and inputs, and record the job as pending in the store.

    Nothing is left behind when this fails: no job, no copy of --items, no output folder it created."""
    from shipyard.serving.replica import resolve_model

    settings = Settings.from_env()
    project = load(request.project)
    api = _batch_api(project, request)
    if import_handler:
        check_handler(request)
    model = resolve_model(project, api)
    job_id = f"{api.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
    folder = _output(request)
    created = False
    try:
        inputs = list(request.inputs) + _items_file(settings.home, job_id, request.items)
        sources = expand(inputs)
        _check_inputs(sources, api, request)
        created = folder.create()
        _record(settings, _job_row(job_id, api, project, request, sources, folder.url, model))
    except BaseException:
        shutil.rmtree(job_dir(settings.home, job_id), ignore_errors=True)
        if created:
            folder.remove_if_empty()
        raise
    return get(job_id, settings)


def _job_row(
    job_id: str, api: BatchAPI, project: Project, request: JobRequest, sources: list[Source], output: str, model: Any
) -> dict[str, Any]:
    return {
        "id": job_id,
        "api": api.name,
        "project": project.directory,
        "spec": api.model_dump(mode="json", by_alias=True),
        "inputs": [{"url": s.url, "format": s.format} for s in sources],
        "output": output,
        "format": request.format,
        "id_column": request.id_column,
        "batch_size": api.batch_size,
        "workers": api.workers,
        "max_retries": api.max_retries,
        "timeout": api.timeout,
        "model_path": model.path,
        "model_digest": model.digest,
    }


def _record(settings: Settings, values: dict[str, Any]) -> None:
    """Insert the job; a database error becomes one line (the database's own first line)."""
    try:
        with open_store(settings) as engine, write_transaction(engine) as connection:
            _refuse_shared_output(connection, values["output"])
            records.insert_job(connection, values)
    except SQLAlchemyError as exc:
        raise StoreFailed(f"job {values['id']!r}", str(getattr(exc, "orig", None) or exc)) from None


def _check_inputs(sources: list[Source], api: BatchAPI, request: JobRequest) -> None:
    required = [n for n, f in (api.input_schema.fields.items() if api.input_schema else []) if f.required]
    try:
        check(sources, required, request.id_column, declared_types(api))
    except (MissingColumns, MissingIdColumn, UnconvertibleColumn) as exc:
        if request.items is None or not exc.source.endswith(ITEMS_FILE):
            raise
        raise _items_error(exc) from None


def _items_error(exc: MissingColumns | MissingIdColumn | UnconvertibleColumn) -> BadInput:
    """The same problem in --items' terms: records and fields, not files and columns."""
    if isinstance(exc, UnconvertibleColumn):
        problem = (
            f"no record's field {exc.column!r} among the first {exc.rows} is {exc.kind} as the API's schema "
            f"declares ({exc.where} has {exc.value!r})"
        )
        return BadInput("--items", problem, "fix the records, or change the field's type in the API's schema")
    fields = ", ".join(exc.found) or "none"
    if isinstance(exc, MissingColumns):
        problem = (
            f"records lack the field(s) {', '.join(exc.missing)} that the API's schema requires (they have: {fields})"
        )
        return BadInput("--items", problem, "add the fields to every record")
    problem = f"records have no field {exc.column!r} for --id-column (they have: {fields})"
    return BadInput("--items", problem, "pass one of their fields to --id-column, or leave the option out")


def _batch_api(project: Project, request: JobRequest) -> BatchAPI:
    batch = [api for api in project.apis if isinstance(api, BatchAPI)]
    chosen = next((api for api in batch if api.name == request.api), None)
    if chosen is None:
        names = ", ".join(api.name for api in batch) or "none"
        raise ConfigError([f"{project.source}: no BatchAPI named {request.api!r}; BatchAPIs here: {names}"])
    overrides = {
        "batch_size": request.batch_size,
        "workers": request.workers,
        "max_retries": request.max_retries,
        "timeout": request.timeout,
    }
    given = {k: v for k, v in overrides.items() if v is not None}
    data = chosen.model_dump(by_alias=True) | given
    data["config"] = {**chosen.config, **(request.config or {})}
    try:
        return BatchAPI.model_validate(data)
    except ValidationError as exc:  # only the request's values can be wrong: the spec was checked at load
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "options"
        problem = str(first["msg"]).removeprefix("Value error, ")
        raise option_error(name, given.get(name, first.get("input")), problem) from None


def _items_file(home: Path, job_id: str, items: list[dict[str, Any]] | None) -> list[str]:
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise BadInput("--items", "must be a JSON list of records (objects)", 'pass [{"a": 1}, {"a": 2}]')
    path = job_dir(home, job_id) / ITEMS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    option = orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY
    path.write_bytes(b"".join(orjson.dumps(item, option=option) for item in items))
    return [str(path)]


def _output(request: JobRequest) -> OutputFolder:
    if not request.output:
        raise BadJobOption("no output given; pass --output FOLDER (a local path or an fsspec URL)")
    text = request.output
    if "://" not in text:
        text = str(Path(text).expanduser().resolve())
    folder = OutputFolder(text)
    folder.check_usable()
    return folder


def _refuse_shared_output(connection: Connection, url: str) -> None:
    c = jobs_table.c
    other = connection.execute(
        select(c.id).where(c.output == url, c.state.in_([s.value for s in ACTIVE])).limit(1)
    ).scalar()
    if other is not None:
        raise BadOutput(url, f"is where unfinished job {other!r} writes", "choose another folder")


# -- reading ----------------------------------------------------------------------------------------------


def info(engine: Engine, job_id: str, with_events: bool = False) -> JobInfo:
    with read_transaction(engine) as connection:
        row = records.read(connection, job_id)
        progress = queue.progress(connection, job_id)
        errors = queue.error_counts(connection, job_id)
    events = [event for _, event in records.events(engine, job_id)] if with_events else None
    return job_info(row, progress, events, errors)


def get(job_id: str, settings: Settings | None = None, with_events: bool = True) -> JobInfo:
    with open_store(settings) as engine:
        return info(engine, job_id, with_events)


def list_jobs(api: str | None = None, limit: int = 100, settings: Settings | None = None) -> list[JobInfo]:
    with open_store(settings) as engine:
        return [info(engine, row["id"]) for row in records.find(engine, api, limit)]


def log_path(job_id: str, settings: Settings | None = None) -> Path:
    settings = settings or Settings.from_env()
    get(job_id, settings, with_events=False)  # JobNotFound for an unknown id
    return job_dir(settings.home, job_id) / "job.log"


def logs(job_id: str, follow: bool = False, settings: Settings | None = None) -> Iterator[str]:
    """The job's log lines (its workers' output and the runner's notes); `follow` until the job ends."""
    settings = settings or Settings.from_env()
    position = 0
    while True:
        lines, position = read_log(job_id, position, settings)
        yield from lines
        if not follow or get(job_id, settings, with_events=False).is_finished:
            return
        time.sleep(0.5)


def read_log(job_id: str, position: int = 0, settings: Settings | None = None) -> tuple[list[str], int]:
    """The complete lines of the job's log from byte `position` on, and the position after them."""
    path = log_path(job_id, settings)
    if not path.exists():
        return [], position
    with open(path, "rb") as handle:
        handle.seek(position)
        chunk = handle.read()
    complete = chunk[: chunk.rfind(b"\n") + 1]
    return complete.decode(errors="replace").splitlines(), position + len(complete)


# -- changing ---------------------------------------------------------------------------------------------


def stop(job_id: str, settings: Settings | None = None, start_runner: bool = True) -> JobInfo:
    """Ask the job's runner to drain its workers and mark it stopped; with no live runner, stop it now.

    Stopped now, the job ends as its runner would end it: batches left leased by dead workers go back to
    the queue, leftovers are cleaned and a manifest marked partial is written; with `start_runner`, a
    runner starts to run the on_job_complete hook. While a worker still holds a batch (its runner died
    and it is finishing the batch in hand), the stop is refused with when to try again."""
    settings = settings or Settings.from_env()
    with open_store(settings) as engine:
        with write_transaction(engine) as connection:
            job = records.read(connection, job_id)
            if JobState(job["state"]).is_terminal:
                raise JobConflict(f"job {job_id!r} already ended ({job['state']}); nothing to stop")
            if records.has_live_runner(job):
                records.set_values(connection, job_id, stop_request=JobState.stopped.value)
                records.add_event(connection, job_id, "stopping: requested by `jobs stop`")
                return info(engine, job_id, with_events=True)
            _refuse_while_held(connection, job_id)
            queue.release_leased(connection, job_id)
            hook = None if job["spec"]["handler"] in ("sklearn", "onnx") else records.HOOK_PENDING
            reason = f"stopped by `jobs stop` (no runner held it) with {_done_text(connection, job)}; parts are kept"
            records.transition(connection, job_id, JobState.stopped, reason, hook_state=hook)
        _finalize_stopped(engine, job, settings)
    if start_runner and hook is not None:
        ensure_runner(settings)
    return get(job_id, settings)


def _refuse_while_held(connection: Connection, job_id: str) -> None:
    held = queue.live_leases(connection, job_id, time.time())
    if held:
        wait = max(1, math.ceil(held[0].expires_at - time.time()))
        raise JobConflict(
            f"job {job_id!r} has no runner, but {held[0].owner} still holds batch {held[0].seq} for up to {wait}s "
            f"(it finishes the batch in hand, then exits); run `shipyard jobs stop {job_id}` again in {wait}s"
        )


def _done_text(connection: Connection, job: dict[str, Any]) -> str:
    progress = queue.progress(connection, job["id"])
    return batches_done_text(progress.batches_done, progress.batches, job["total_batches"] is not None)


def _finalize_stopped(engine: Engine, job: dict[str, Any], settings: Settings) -> None:
    """The stopped job's folder: its parts' one schema, leftovers removed, the partial manifest."""
    log = job_dir(settings.home, job["id"]) / "job.log"
    try:
        finalize(engine, job, JobState.stopped, False, lambda message: write_note(log, message))
    except OSError as exc:
        raise BadOutput(
            job["output"],
            f"the job is stopped, but its manifest could not be written ({exc})",
            "make the folder writable; `shipyard jobs retry` then runs the job to its end",
        ) from None


def retry(
    job_id: str, start_runner: bool = True, settings: Settings | None = None, timeout: float | None = None
) -> JobInfo:
    """Re-run the job's dead-lettered rows (and, for a stopped or failed job, what it had not finished).

    The retry is a new run: its timeout (the job's, or `timeout` seconds from now on) counts from now, and
    the time since the job ended is not counted in its duration and rate."""
    if timeout is not None and not is_seconds(timeout):
        raise option_error("timeout", timeout, "it should be a number of seconds greater than 0 (30m, 2h, ...)")
    settings = settings or Settings.from_env()
    with open_store(settings) as engine:
        with write_transaction(engine) as connection:
            job = records.read(connection, job_id)
            if JobState(job["state"]) not in RETRYABLE:
                states = ", ".join(state.value for state in RETRYABLE)
                raise JobConflict(f"job {job_id!r} is {job['state']}; retry applies to jobs that are {states}")
            unfinished = queue.unfinished(connection, job_id)
            batches, rows = queue.requeue_dead(connection, job_id)
            now = time.time()
            records.transition(
                connection,
                job_id,
                JobState.running if job["total_batches"] is not None else JobState.pending,
                retry_reason(rows, batches, unfinished, job["total_batches"] is None)
                + ("" if timeout is None else f"; its timeout is now {timeout:g}s"),
                stop_request=None,
                timeout=job["timeout"] if timeout is None else timeout,
                ended_at=None,
                error=None,
                hook_state=None,
                run_started_at=now,
                prior_seconds=run_seconds(
                    job["started_at"], job["run_started_at"], job["ended_at"], job["prior_seconds"] or 0.0, now
                )
                or 0.0,
            )
        OutputFolder(job["output"]).remove_manifest()  # the folder is incomplete again until the job ends
    if start_runner:
        ensure_runner(settings)
    return get(job_id, settings)


def retry_reason(dead_rows: int, dead_batches: int, unfinished: tuple[int, int], unsplit: bool) -> str:
    """What a retry will run: `retrying 2 dead-lettered rows (2 new batches), 5 unfinished batches (50 rows)`."""
    parts = [f"{counted(dead_rows, 'dead-lettered row')} ({counted(dead_batches, 'new batch', 'new batches')})"]
    if unfinished[0]:
        batches = counted(unfinished[0], "unfinished batch", "unfinished batches")
        parts.append(f"{batches} ({counted(unfinished[1], 'row')})")
    if unsplit:
        parts.append("the part of the input not split yet")
    return "retrying " + ", ".join(parts)


def delete(job_id: str, settings: Settings | None = None) -> None:
    """Forget an ended job: its rows in the store (batches, dead letters' copies, events) and its log.
    Its output folder is the user's and stays as it is."""
    settings = settings or Settings.from_env()
    with open_store(settings) as engine, write_transaction(engine) as connection:
        job = records.read(connection, job_id)
        if not JobState(job["state"]).is_terminal:
            raise JobConflict(
                f"job {job_id!r} is {job['state']}; only a job that ended can be deleted: "
                f"`shipyard jobs stop {job_id}` first"
            )
        if job["hook_state"] == records.HOOK_PENDING:
            raise JobConflict(f"job {job_id!r} ended but its on_job_complete hook has not run yet; try again shortly")
        records.delete(connection, job_id)
    shutil.rmtree(job_dir(settings.home, job_id), ignore_errors=True)


# -- the runner's composition root --------------------------------------------------------------------------


def run_scheduler(
    burst: bool = False,
    only: set[str] | None = None,
    should_exit: threading.Event | None = None,
    on_tick: Callable[[], None] | None = None,
    lease_ttl: float = 30.0,
    settings: Settings | None = None,
) -> None:
    """Run a JobRunner in this thread until `should_exit` is set (or, with `burst`, until no job is left)."""
    settings = settings or Settings.from_env()
    options = RunnerOptions(
        burst=burst,
        only=frozenset(only) if only is not None else None,
        driver=DriverOptions(lease_ttl=lease_ttl),
    )
    with open_store(settings) as engine:
        JobRunner(engine, settings.home, options).run(should_exit, on_tick)


def ensure_runner(settings: Settings) -> None:
    """Start a detached `shipyard jobs run-scheduler --until-idle` unless a runner already runs for this
    home: a standalone one, or the daemon's (which claims every job in its store)."""
    from shipyard.client import daemon_serves

    pid_file = settings.home / "jobs" / RUNNER_PID
    if daemon_serves(settings.home) or (pid_file.exists() and records.pid_alive(_read_pid(pid_file))):
        return
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with open(pid_file.parent / "runner.log", "ab") as out:
        subprocess.Popen(
            [sys.executable, "-m", "shipyard", "jobs", "run-scheduler", "--until-idle"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=os.environ.copy(),
        )


def _read_pid(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


@contextmanager
def runner_pid_file(settings: Settings) -> Iterator[Path]:
    path = settings.home / "jobs" / RUNNER_PID
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(os.getpid()))
    try:
        yield path
    finally:
        if _read_pid(path) == os.getpid():
            path.unlink(missing_ok=True)


def has_unfinished(settings: Settings | None = None) -> bool:
    with open_store(settings) as engine:
        return bool(records.unfinished(engine))
