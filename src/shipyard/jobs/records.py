"""Job rows and their events in the store: create, read, change state (always with an event), claim.

A runner owns a job through `runner` and `runner_expires_at`, renewed every tick. Another runner may
claim the job once that expires, or at once when the owner ran on the same host and its process is gone.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, insert, or_, select, update
from sqlalchemy import delete as sql_delete

from shipyard.jobs.errors import JobNotFound
from shipyard.jobs.states import ACTIVE, JobState
from shipyard.store import read_transaction, write_transaction
from shipyard.store.tables import job_batches, job_events, jobs

_J = jobs.c
HOOK_PENDING = "pending"


@dataclass(frozen=True)
class Event:
    at: float
    state: str | None
    message: str


def insert_job(connection: Connection, values: dict[str, Any]) -> None:
    now = time.time()
    connection.execute(insert(jobs).values(state=JobState.pending, reason="", created_at=now, updated_at=now, **values))
    add_event(connection, values["id"], "submitted", JobState.pending)


def add_event(connection: Connection, job_id: str, message: str, state: str | None = None) -> None:
    connection.execute(insert(job_events).values(job_id=job_id, at=time.time(), state=state, message=message))


def read(connection: Connection, job_id: str) -> dict[str, Any]:
    row = connection.execute(select(jobs).where(_J.id == job_id)).mappings().first()
    if row is None:
        raise JobNotFound(job_id)
    return dict(row)


def get(engine: Engine, job_id: str) -> dict[str, Any]:
    with read_transaction(engine) as connection:
        return read(connection, job_id)


def find(engine: Engine, api: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    query = select(jobs).order_by(_J.created_at.desc()).limit(limit)
    if api is not None:
        query = query.where(_J.api == api)
    with read_transaction(engine) as connection:
        return [dict(row) for row in connection.execute(query).mappings()]


def events(engine: Engine, job_id: str, after: int = 0) -> list[tuple[int, Event]]:
    query = select(job_events).where(job_events.c.job_id == job_id, job_events.c.id > after).order_by(job_events.c.id)
    with read_transaction(engine) as connection:
        return [(row.id, Event(row.at, row.state, row.message)) for row in connection.execute(query)]


def transition(
    connection: Connection,
    job_id: str,
    state: JobState,
    reason: str,
    expect: Sequence[JobState] | None = None,
    **values: Any,
) -> bool:
    """Move the job to `state` (only from one of `expect`, when given) and record the reason as an event."""
    now = time.time()
    condition = _J.id == job_id
    if expect is not None:
        condition = and_(condition, _J.state.in_([s.value for s in expect]))
    if state.is_terminal:
        values.setdefault("ended_at", now)
    result = connection.execute(
        update(jobs).where(condition).values(state=state, reason=reason, updated_at=now, **values)
    )
    if result.rowcount != 1:
        return False
    add_event(connection, job_id, reason, state)
    return True


def delete(connection: Connection, job_id: str) -> None:
    """The job's rows, batches and events (one by one: SQLite cascades only with foreign keys on)."""
    for table, column in ((job_batches, job_batches.c.job_id), (job_events, job_events.c.job_id), (jobs, _J.id)):
        connection.execute(sql_delete(table).where(column == job_id))


def set_values(connection: Connection, job_id: str, **values: Any) -> None:
    connection.execute(update(jobs).where(_J.id == job_id).values(updated_at=time.time(), **values))


# -- runner ownership -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunnerIdentity:
    name: str
    host: str
    pid: int

    @classmethod
    def current(cls) -> RunnerIdentity:
        host, pid = socket.gethostname(), os.getpid()
        return cls(f"runner-{host}-{pid}-{os.urandom(3).hex()}", host, pid)


def _needs_runner() -> Any:
    return or_(_J.state.in_([s.value for s in ACTIVE]), _J.hook_state == HOOK_PENDING)


def claim(engine: Engine, me: RunnerIdentity, ttl: float, only: set[str] | None = None) -> list[str]:
    """Take every unfinished job that no live runner owns; returns the ids newly taken."""
    now = time.time()
    with write_transaction(engine) as connection:
        query = select(_J.id, _J.runner, _J.runner_host, _J.runner_pid, _J.runner_expires_at).where(
            _needs_runner(), or_(_J.runner.is_(None), _J.runner != me.name)
        )
        taken = []
        for row in connection.execute(query).all():
            if only is not None and row.id not in only:
                continue
            if row.runner is not None and not _owner_gone(row, me, now):
                continue
            connection.execute(
                update(jobs)
                .where(_J.id == row.id)
                .values(runner=me.name, runner_host=me.host, runner_pid=me.pid, runner_expires_at=now + ttl)
            )
            previous = f" from {row.runner}, which stopped" if row.runner else ""
            add_event(connection, row.id, f"{me.name} took the job{previous}")
            taken.append(row.id)
        return taken


def _owner_gone(row: Any, me: RunnerIdentity, now: float) -> bool:
    if row.runner_expires_at is None or row.runner_expires_at < now:
        return True
    return bool(row.runner_host == me.host and row.runner_pid and not pid_alive(row.runner_pid))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def heartbeat(engine: Engine, me: RunnerIdentity, ttl: float) -> set[str]:
    """Renew this runner's hold on its jobs; returns the ids it still holds."""
    now = time.time()
    with write_transaction(engine) as connection:
        connection.execute(update(jobs).where(_J.runner == me.name).values(runner_expires_at=now + ttl))
        return set(connection.execute(select(_J.id).where(_J.runner == me.name)).scalars())


def disown(engine: Engine, me: RunnerIdentity, job_id: str) -> None:
    with write_transaction(engine) as connection:
        connection.execute(
            update(jobs).where(_J.id == job_id, _J.runner == me.name).values(runner=None, runner_expires_at=None)
        )


def has_live_runner(job: dict[str, Any]) -> bool:
    if job["runner"] is None or (job["runner_expires_at"] or 0) < time.time():
        return False
    return not (job["runner_host"] == socket.gethostname() and job["runner_pid"] and not pid_alive(job["runner_pid"]))


def unfinished(engine: Engine) -> list[str]:
    with read_transaction(engine) as connection:
        return list(connection.execute(select(_J.id).where(_needs_runner())).scalars())
