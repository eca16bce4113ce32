"""The public jobs SDK: the same calls whether a daemon runs or not.

When a daemon serves this SHIPYARD_HOME (or SHIPYARD_URL names one), every call goes through its
control API and its runner runs the job; otherwise the call works on the store directly and `submit`
starts a detached standalone runner. Both read and write the same store, so a job submitted one way
can be watched, stopped or retried the other.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from shipyard.client import Client, local_daemon
from shipyard.jobs import service
from shipyard.jobs.request import JobRequest
from shipyard.jobs.view import JobInfo


def submit(request: JobRequest, start_runner: bool = True) -> JobInfo:
    """Check and queue a job; returns at once. `start_runner=False` leaves running it to the caller
    (it has no effect while a daemon runs: the daemon's runner takes every job)."""
    client = local_daemon()
    if client is None:
        return service.submit(request, start_runner)
    with client:
        service.check_handler(request)  # user code is imported here, in the caller's process
        return client.submit_job(request)  # with its paths made absolute here, in the caller's directory


def get(job_id: str, with_events: bool = True) -> JobInfo:
    client = local_daemon()
    if client is None:
        return service.get(job_id, with_events=with_events)
    with client:
        return client.get_job(job_id)


def list_jobs(api: str | None = None, limit: int = 100) -> list[JobInfo]:
    client = local_daemon()
    if client is None:
        return service.list_jobs(api, limit)
    with client:
        return client.list_jobs(api, limit)


def stop(job_id: str, start_runner: bool = True) -> JobInfo:
    """Stop the job (its runner drains the workers). With no runner, it stops at once, and `start_runner`
    starts one for its on_job_complete hook (no effect while a daemon runs: its runner does that)."""
    client = local_daemon()
    if client is None:
        return service.stop(job_id, start_runner=start_runner)
    with client:
        return client.stop_job(job_id)


def retry(job_id: str, start_runner: bool = True, timeout: float | None = None) -> JobInfo:
    """Re-run the job's dead-lettered rows (and, for a stopped or failed job, what it had not finished);
    `timeout` (seconds) replaces the job's timeout from this run on."""
    client = local_daemon()
    if client is None:
        return service.retry(job_id, start_runner, timeout=timeout)
    with client:
        return client.retry_job(job_id, timeout=timeout)


def delete(job_id: str) -> None:
    """Forget an ended job (its store rows and log); its output folder stays."""
    client = local_daemon()
    if client is None:
        service.delete(job_id)
        return
    with client:
        client.delete_job(job_id)


def logs(job_id: str, follow: bool = False) -> Iterator[str]:
    """The job's log lines (its workers' output and the runner's notes); `follow` until the job ends."""
    client = local_daemon()
    if client is None:
        yield from service.logs(job_id, follow)
        return
    with client:
        yield from client.job_logs(job_id, follow=follow)


def wait(job_id: str, timeout: float | None = None, on_change: Callable[[JobInfo], None] | None = None) -> JobInfo:
    """Poll until the job ends (or `timeout` seconds pass); returns its last state."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        current = get(job_id, with_events=False)
        if on_change is not None:
            on_change(current)
        if current.is_finished or (deadline is not None and time.monotonic() > deadline):
            return current
        time.sleep(0.5)


def is_daemon_hosted() -> bool:
    """Whether jobs run in a daemon now (so a foreground runner is neither needed nor wanted)."""
    client: Client | None = local_daemon()
    if client is None:
        return False
    client.close()
    return True
