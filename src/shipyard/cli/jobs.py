"""`shipyard jobs ...`: submit batch jobs over files, watch them, stop, retry, read their logs.

Through `shipyard.jobs`: the daemon's control API when a daemon serves this SHIPYARD_HOME (its runner
runs every job; `--wait` only watches), else the store directly: `submit` then starts a detached runner
(`shipyard jobs run-scheduler --until-idle`) unless one runs, and `submit --wait` runs the job in the
foreground with a progress bar instead (Ctrl-C hands it to a detached runner and returns).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from types import FrameType
from typing import TYPE_CHECKING, Any, cast

import click
import orjson
import yaml
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from shipyard.cli.output import reports_errors

if TYPE_CHECKING:
    from shipyard.jobs.output import OutputFormat

_OUTPUT = click.option(
    "-o",
    "--output",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table for people, json for scripts.",
)


@click.group()
def jobs() -> None:
    """Batch jobs: durable, retried, resumable predictions over files."""


def _config(_ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} must be KEY=VALUE, for example threshold=0.5", param=param)
        config[key] = yaml.safe_load(text) if text else ""
    return config


def _duration(_ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    from shipyard.spec.units import parse_duration

    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param=param) from None


def _items(_ctx: click.Context, param: click.Parameter, value: str | None) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    try:
        data = open(value[1:], "rb").read() if value.startswith("@") else value.encode()  # noqa: SIM115
        items = orjson.loads(data)
    except OSError as exc:
        raise click.BadParameter(f"cannot read {value[1:]!r}: {exc.strerror}", param=param) from None
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"is not valid JSON: {exc}", param=param) from None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise click.BadParameter('must be a JSON list of records, such as [{"a": 1}, {"a": 2}]', param=param)
    return items


@jobs.command()
@click.argument("api")
@click.option(
    "--input", "-i", "inputs", multiple=True, help="CSV / JSON lines / Parquet file, folder, glob or fsspec URL."
)
@click.option("--items", callback=_items, help="A JSON list of records: @file.json or inline JSON.")
@click.option("--output", "destination", required=True, help="Folder (or fsspec URL) for the parts and manifest.")
@click.option("--format", "fmt", type=click.Choice(["parquet", "jsonl", "csv"]), default="parquet", show_default=True)
@click.option("--id-column", help="Keep only this input column beside the predictions (default: all of them).")
@click.option("--batch-size", type=click.IntRange(1, 1_000_000), help="Rows per batch (default: the spec's).")
@click.option("--workers", type=click.IntRange(1, 256), help="Worker processes (default: the spec's).")
@click.option(
    "--max-retries", type=click.IntRange(0, 100), help="Retries of a failing batch before its rows run one by one."
)
@click.option("--timeout", callback=_duration, help="Longest the job may run, e.g. 2h, 30m.")
@click.option("--config", "config", multiple=True, callback=_config, help="Override handler config: KEY=VALUE.")
@click.option("--project", default=".", show_default=True, type=click.Path(), help="Project folder or shipyard.yaml.")
@click.option("--wait", is_flag=True, help="Run in the foreground with a progress bar until the job ends.")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON instead of its id.")
@reports_errors
def submit(
    api: str,
    inputs: tuple[str, ...],
    items: list[dict[str, Any]] | None,
    destination: str,
    fmt: str,
    id_column: str | None,
    batch_size: int | None,
    workers: int | None,
    max_retries: int | None,
    timeout: float | None,
    config: dict[str, Any],
    project: str,
    wait: bool,
    as_json: bool,
) -> None:
    """Score INPUT rows with batch API API; prints the job id (or, with --wait, the outcome)."""
    from shipyard import jobs as sdk

    if not inputs and items is None:
        raise click.UsageError("pass --input SRC (repeatable) or --items @file.json")
    request = sdk.JobRequest(
        api,
        inputs,
        destination,
        project,
        items,
        cast("OutputFormat", fmt),
        id_column,
        batch_size,
        workers,
        max_retries,
        timeout,
        config,
    )
    job = sdk.submit(request, start_runner=not wait)
    if not wait:
        _emit(job) if as_json else click.echo(job.id)
        return
    click.echo(f"job {job.id}", err=True)
    final = _run_foreground(job.id)
    _emit(final) if as_json else click.echo(_summary(final))
    sys.exit(0 if final.state == "succeeded" else 1)


def _run_foreground(job_id: str) -> Any:
    """Show the job's progress until it ends: the daemon's runner runs it when a daemon is up, else a
    runner in this process does (Ctrl-C then hands the job to a detached runner)."""
    from shipyard.jobs.sdk import is_daemon_hosted

    return _watch(job_id) if is_daemon_hosted() else _run_here(job_id)


def _watch(job_id: str) -> Any:
    from shipyard import jobs as sdk

    console = Console(stderr=True)
    with _progress(console) as bar, logs_above(console):
        task = bar.add_task(job_id, total=None, failed=0, state="pending", rows="", rate="")
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C stops the watching, not the job
            sdk.wait(job_id, on_change=lambda job: _advance(bar, task, job))
        final = sdk.get(job_id)
        _advance(bar, task, final)
    if not final.is_finished:
        click.echo(f"job {job_id} continues in the daemon; `shipyard jobs stop {job_id}` stops it", err=True)
    return final


def _run_here(job_id: str) -> Any:
    from shipyard import jobs as sdk
    from shipyard.jobs.service import ensure_runner
    from shipyard.settings import Settings

    should_exit = threading.Event()

    def interrupt(sig: int, frame: FrameType | None) -> None:
        should_exit.set()

    previous = signal.signal(signal.SIGINT, interrupt)
    console = Console(stderr=True)
    with _progress(console) as bar, logs_above(console):
        task = bar.add_task(job_id, total=None, failed=0, state="pending", rows="", rate="")
        last = [0.0]

        def on_tick() -> None:
            if time.monotonic() - last[0] >= 0.5:
                last[0] = time.monotonic()
                _advance(bar, task, sdk.get(job_id, with_events=False))

        try:
            sdk.run_scheduler(burst=True, only={job_id}, should_exit=should_exit, on_tick=on_tick)
        finally:
            signal.signal(signal.SIGINT, previous)
        final = sdk.get(job_id)
        _advance(bar, task, final)
    if not final.is_finished:
        ensure_runner(Settings.from_env())
        click.echo(
            f"detached: job {job_id} continues in the background; `shipyard jobs stop {job_id}` stops it", err=True
        )
    return final


@contextlib.contextmanager
def logs_above(console: Console) -> Iterator[None]:
    """While a live display runs, log lines print above it (through its console), not across it: the
    handlers that write to a stream are set aside and one that writes to `console` takes their place."""
    from rich.logging import RichHandler

    root = logging.getLogger()
    streams = [h for h in root.handlers if type(h) is logging.StreamHandler]
    handler = RichHandler(console=console, show_path=False, show_time=False, markup=False)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    handler.setLevel(min((h.level for h in streams), default=logging.WARNING))
    for stream in streams:
        root.removeHandler(stream)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        for stream in streams:
            root.addHandler(stream)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.fields[state]:<10}"),
        BarColumn(),
        TextColumn("{task.fields[rows]}"),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        TextColumn("[red]{task.fields[failed]} failed"),
        console=console,
        transient=False,
    )


def _advance(bar: Progress, task: TaskID, job: Any) -> None:
    rate = f"{job.rate:,.0f} rows/s" if job.rate else ""
    handled = job.rows_done + job.rows_failed
    rows = f"{handled:,}/{'?' if job.rows_total is None else format(job.rows_total, ',')} rows"
    bar.update(
        task,
        total=job.rows_total,
        completed=job.rows_done + job.rows_failed,
        failed=job.rows_failed,
        rows=rows,
        state=job.state,
        rate=rate,
    )


def _summary(job: Any) -> str:
    line = f"{job.id} {job.state}: {job.reason}"
    if job.error and job.error not in job.reason:
        line += f" ({job.error})"
    return line


def _emit(job: Any) -> None:
    click.echo(orjson.dumps(job.to_dict(), option=orjson.OPT_INDENT_2, default=str).decode())


def _when(stamp: float | None) -> str:
    return datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S") if stamp else "-"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    minutes, seconds = divmod(int(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


NO_RUNNER = "no runner holds this job: start one with `shipyard up` or `shipyard jobs run-scheduler`"


def state_text(job: Any) -> str:
    """The state, and why nothing moves when no runner holds an unfinished job."""
    return f"{job.state} ({NO_RUNNER})" if job.is_stalled else str(job.state)


def _batches_text(job: Any) -> str:
    total = f"{job.batches} total" if job.batches_total is not None else f"{job.batches} split so far"
    return f"{job.batches_done} done, {job.batches_failed} with dead letters, {total}"


def _render(job: Any) -> None:
    table = Table(show_header=False, box=None)
    rows = [
        ("job", job.id),
        ("api", job.api),
        ("state", state_text(job)),
        ("reason", job.reason),
        ("batches", _batches_text(job)),
        (
            "rows",
            f"{job.rows_done:,} scored, {job.rows_failed:,} failed, "
            f"{'-' if job.rows_total is None else format(job.rows_total, ',')} total",
        ),
        ("rate", f"{job.rate:,.0f} rows/s" if job.rate else "-"),
        ("started", _when(job.started_at)),
        ("duration", _seconds(job.duration)),
        ("output", job.output),
    ]
    if job.error:
        rows.append(("error", job.error))
    from shipyard.jobs.view import error_line

    rows += [("errors" if i == 0 else "", error_line(error)) for i, error in enumerate(job.errors)]
    for key, value in rows:
        table.add_row(f"[bold]{key}[/]", Text(str(value)))
    console = Console(soft_wrap=True)
    console.print(table)
    if job.events:
        console.print("[bold]events[/]")
        for event in job.events[-10:]:
            state = f" [{event.state}]" if event.state else ""
            console.print(f"  {_when(event.at)}{state} {event.message}", markup=False, highlight=False)


@jobs.command()
@click.argument("job_id", metavar="JOB")
@click.option(
    "-w", "--watch", is_flag=True, help="Refresh every second until the job ends (-o json: a line per change)."
)
@_OUTPUT
@reports_errors
def get(job_id: str, watch: bool, fmt: str) -> None:
    """Show a job's state, progress, errors and events."""
    from shipyard import jobs as sdk

    job = sdk.get(job_id)
    if watch and fmt == "json":
        _watch_json(job)
        return
    while watch and not job.is_finished:
        click.clear()
        _render(job)
        time.sleep(1)
        job = sdk.get(job_id)
    _emit(job) if fmt == "json" else _render(job)


def _watch_json(job: Any) -> None:
    """JSON lines: the job as one compact object each time it changes, until it ends; nothing else."""
    from shipyard import jobs as sdk

    last = None
    while True:
        seen = _progress_key(job)
        if seen != last:
            click.echo(orjson.dumps(job.to_dict(), default=str).decode())
            last = seen
        if job.is_finished:
            return
        time.sleep(1)
        job = sdk.get(job.id)


def _progress_key(job: Any) -> tuple[Any, ...]:
    """What counts as a change: not the clock (duration, rate) but state, counts and events."""
    return (job.state, job.reason, job.batches, job.batches_done, job.rows_done, job.rows_failed, len(job.events))


@jobs.command(name="list")
@click.argument("api", required=False)
@_OUTPUT
@reports_errors
def list_command(api: str | None, fmt: str) -> None:
    """List recent jobs, newest first (of one API, if given)."""
    from shipyard import jobs as sdk

    found = sdk.list_jobs(api)
    if fmt == "json":
        click.echo(orjson.dumps([job.to_dict() for job in found], default=str).decode())
        return
    rows = [
        (
            job.id,
            job.api,
            f"{job.state} (no runner)" if job.is_stalled else job.state,
            f"{job.rows_done:,}",
            f"{job.rows_failed:,}",
            _when(job.started_at),
            _seconds(job.duration),
        )
        for job in found
    ]
    for line in columns(("JOB", "API", "STATE", "ROWS", "FAILED", "STARTED", "DURATION"), rows):
        click.echo(line)


def columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Plain columns, each as wide as its widest value: nothing is ever cut (a narrow terminal wraps the
    line), and piped output reads the same."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(str(value).ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


@jobs.command()
@click.argument("job_id", metavar="JOB")
@reports_errors
def stop(job_id: str) -> None:
    """Drain the job's workers (finished parts are kept) and mark it stopped."""
    from shipyard import jobs as sdk

    job = sdk.stop(job_id)
    click.echo(f"{job.id}: {'stopped' if job.is_finished else 'stopping'}")


@jobs.command()
@click.argument("job_id", metavar="JOB")
@click.option("--timeout", callback=_duration, help="A new timeout for the job from this run on, e.g. 2h, 30m.")
@click.option("--wait", is_flag=True, help="Run in the foreground until the job ends.")
@reports_errors
def retry(job_id: str, timeout: float | None, wait: bool) -> None:
    """Re-run only the dead-lettered rows (and what a stopped job left unfinished)."""
    from shipyard import jobs as sdk

    job = sdk.retry(job_id, start_runner=not wait, timeout=timeout)
    click.echo(f"{job.id}: {job.reason}")
    if wait:
        final = _run_foreground(job_id)
        click.echo(_summary(final))
        sys.exit(0 if final.state == "succeeded" else 1)


@jobs.command()
@click.argument("job_id", metavar="JOB")
@reports_errors
def delete(job_id: str) -> None:
    """Forget an ended job: its batches, dead letters' copies and events in the store, and its log.

    The output folder (parts, _failed/, manifest) is kept. A job with dead letters cannot be retried
    once deleted."""
    from shipyard import jobs as sdk

    sdk.delete(job_id)
    click.echo(f"{job_id}: deleted (its output folder is kept)")


@jobs.command()
@click.argument("job_id", metavar="JOB")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the job ends.")
@reports_errors
def logs(job_id: str, follow: bool) -> None:
    """Print the job's log: its workers' output and what the runner did."""
    from shipyard import jobs as sdk

    for line in sdk.logs(job_id, follow):
        click.echo(line)


@jobs.command(name="run-scheduler")
@click.option("--until-idle", is_flag=True, help="Exit once no job is left unfinished (drain-and-exit).")
@click.option("--lease-ttl", type=float, default=30.0, show_default=True, help="Seconds a batch lease lasts unrenewed.")
@reports_errors
def run_scheduler(until_idle: bool, lease_ttl: float) -> None:
    """Run jobs from the store in the foreground until SIGTERM/Ctrl-C; resumes unfinished jobs first."""
    from shipyard import jobs as sdk
    from shipyard.jobs.service import has_unfinished, runner_pid_file
    from shipyard.settings import Settings

    settings = Settings.from_env()
    should_exit = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _sig, _frame: should_exit.set())
    with runner_pid_file(settings) as pid_file:
        while not should_exit.is_set():
            sdk.run_scheduler(burst=until_idle, should_exit=should_exit, lease_ttl=lease_ttl, settings=settings)
            if not until_idle:
                break
            pid_file.unlink(missing_ok=True)  # a submit from now on starts its own runner...
            if not has_unfinished(settings):  # ...and one that came just before is caught here
                break
            pid_file.write_text(str(os.getpid()))
