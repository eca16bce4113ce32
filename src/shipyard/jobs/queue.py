"""The durable batch queue: batches in the store, leased to one worker at a time.

A lease is a token and an expiry. Its worker renews it while it works; if the worker dies, the lease
expires and the next `lease()` hands the batch to another worker, counting the lost attempt as a failure
(so a batch that kills its worker cannot loop forever). The runner does the same at once for a worker
it saw exit or killed (`abandon`). Row by row, a worker records the row it is about to run
(`advance`), so a death there is put down to that row alone, and a row that workers died on twice
(`ROW_DEATHS`) is dead-lettered unrun on the next attempt while the others run. Nobody's fault counts:
a runner that stops its workers gives their batches back (`release_owner`), and a lease that expired
because the runner watching its worker died too (the job has another runner now: `lease_runner`) is
taken over as if released. Every change is one short transaction that checks the token, so a worker
that lost its lease can never mark the batch done. On SQLite the write lock serializes leasing; on
PostgreSQL `FOR UPDATE SKIP LOCKED` lets workers lease side by side.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, and_, case, func, insert, or_, select, update

from shipyard.jobs.states import ROW_DEATHS, BatchState, Mode, backoff, mode_for
from shipyard.store import read_transaction, write_transaction
from shipyard.store.tables import job_batches, jobs

_B = job_batches.c


@dataclass(frozen=True)
class Lease:
    """One worker's hold on one batch, with everything it needs to run it."""

    job_id: str
    seq: int
    token: str
    owner: str
    attempt: int
    mode: Mode
    failures: int
    source_index: int
    source_offset: int
    row_numbers: list[int] | None
    payload: bytes
    last_error: str | None
    crashed_rows: dict[int, str] = field(default_factory=dict)
    """Row by row: rows (index in the batch) that workers died on `ROW_DEATHS` times, and how the last
    one died; they are dead-lettered without running again."""

    def row_number(self, index: int) -> int:
        """The row's number within its source file (0-based), for dead letters."""
        if self.row_numbers is not None:
            return self.row_numbers[index]
        return self.source_offset + index


@dataclass(frozen=True)
class Part:
    """A file a batch wrote, relative to the job's output folder."""

    path: str
    rows: int
    digest: str
    size: int


@dataclass(frozen=True)
class Outcome:
    """What running a batch produced: its output part and its dead letters (either may be absent)."""

    ok_rows: int
    failed_rows: int
    part: Part | None = None
    failed_part: Part | None = None
    dead_payload: bytes | None = None
    dead_errors: dict[str, int] | None = None
    """Each distinct error of the batch's dead letters, with how many rows it failed."""
    part_schema: bytes | None = None
    """The Arrow schema of the part as written (serialized), so the job's end can give all parts one."""


@dataclass(frozen=True)
class Holding:
    """A leased batch as the runner sees it: who holds it, since when, until when."""

    seq: int
    owner: str
    leased_at: float | None
    """None for a lease taken before Shipyard recorded when (its time limit is not checked)."""
    expires_at: float
    row_cursor: int | None


@dataclass(frozen=True)
class Blame:
    """What an abandoned attempt was put down to: the row its worker was on (None: no row; the batch's
    attempt failed), and whether that row has now killed workers often enough to be set aside."""

    seq: int
    row: int | None
    isolated: bool = False


@dataclass(frozen=True)
class Progress:
    batches: int
    batches_done: int
    batches_failed: int
    rows_done: int
    rows_failed: int
    leased: int

    @property
    def has_work(self) -> bool:
        return self.batches_done < self.batches


def enqueue(
    connection: Connection,
    job_id: str,
    seq: int,
    source_index: int,
    source_offset: int,
    rows: int,
    payload: bytes,
    row_numbers: list[int] | None = None,
    parent_seq: int | None = None,
) -> None:
    connection.execute(
        insert(job_batches).values(
            job_id=job_id,
            seq=seq,
            state=BatchState.pending,
            source_index=source_index,
            source_offset=source_offset,
            row_numbers=row_numbers,
            rows=rows,
            payload=payload,
            parent_seq=parent_seq,
            failures=0,
            leases=0,
            not_before=0.0,
            ok_rows=0,
            failed_rows=0,
        )
    )


def _available(job_id: str, now: float) -> Any:
    pending = and_(_B.state == BatchState.pending, _B.not_before <= now)
    expired = and_(_B.state == BatchState.leased, _B.lease_expires_at < now)
    return and_(_B.job_id == job_id, or_(pending, expired))


def lease(
    engine: Engine, job_id: str, owner: str, ttl: float, max_retries: int, now: float | None = None
) -> Lease | None:
    """Lease the first available batch of the job (pending, or leased with an expired lease), or None."""
    now = time.time() if now is None else now
    with write_transaction(engine) as connection:
        query = (
            select(_B.seq, _B.state, _B.failures, _B.leases, _B.lease_owner, _B.last_error)
            .add_columns(_B.row_cursor, _B.crashed_rows, _B.lease_runner)
            .where(_available(job_id, now))
            .order_by(_B.seq)
            .limit(1)
        )
        if connection.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        found = connection.execute(query).first()
        if found is None:
            return None
        runner = connection.execute(select(jobs.c.runner).where(jobs.c.id == job_id)).scalar()
        values: dict[str, Any] = {"failures": found.failures, "last_error": found.last_error}
        if found.state == BatchState.leased:  # its worker stopped renewing
            values.update(_expired(found, runner))
        token = uuid.uuid4().hex
        claimed = connection.execute(
            update(job_batches)
            .where(_available(job_id, now), _B.seq == found.seq)
            .values(
                state=BatchState.leased,
                lease_token=token,
                lease_owner=owner,
                lease_runner=runner,
                lease_expires_at=now + ttl,
                leased_at=now,
                leases=_B.leases + 1,
                **values,
            )
        )
        if claimed.rowcount != 1:
            return None
        row = connection.execute(
            select(_B.source_index, _B.source_offset, _B.row_numbers, _B.payload, _B.crashed_rows).where(
                _B.job_id == job_id, _B.seq == found.seq
            )
        ).one()
    failures = int(values["failures"])
    return Lease(
        job_id,
        found.seq,
        token,
        owner,
        found.leases + 1,
        mode_for(failures, max_retries),
        failures,
        row.source_index,
        row.source_offset,
        row.row_numbers,
        bytes(row.payload),
        values["last_error"],
        poison_rows(row.crashed_rows),
    )


def _expired(row: Any, runner: str | None) -> dict[str, Any]:
    """An expired lease: its attempt failed, unless the runner that watched its worker is gone too (then
    the worker most likely died with it, or finished its batch and exited unwatched: no one's fault)."""
    if row.lease_runner is not None and row.lease_runner != runner:
        return {"row_cursor": None}
    return _abandoned(row, f"the lease of {row.lease_owner} expired: the worker hung or died")


def _abandoned(row: Any, error: str, deaths: int = 1) -> dict[str, Any]:
    """The attempt in hand is lost (its worker died, hung or was killed): put it down to the row it was on,
    if it was on one (row by row), else count a failure of the whole attempt."""
    if row.row_cursor is not None:
        crashed = dict(row.crashed_rows or {})
        before = _deaths(crashed.get(str(row.row_cursor)))
        crashed[str(row.row_cursor)] = {"error": error, "deaths": before + deaths}
        return {"failures": row.failures, "row_cursor": None, "crashed_rows": crashed, "last_error": error}
    return {"failures": row.failures + 1, "row_cursor": None, "last_error": error}


def _deaths(entry: Any) -> int:
    """How many workers died on a row; an entry stored before deaths were counted set the row aside at once."""
    if entry is None:
        return 0
    return int(entry["deaths"]) if isinstance(entry, dict) else ROW_DEATHS


def poison_rows(crashed: dict[str, Any] | None) -> dict[int, str]:
    """The rows (index in the batch) that workers died on `ROW_DEATHS` times, with how the last one died."""
    found = {}
    for index, entry in (crashed or {}).items():
        if _deaths(entry) >= ROW_DEATHS:
            found[int(index)] = entry["error"] if isinstance(entry, dict) else str(entry)
    return found


def _held(held: Lease) -> Any:
    return and_(
        _B.job_id == held.job_id,
        _B.seq == held.seq,
        _B.lease_token == held.token,
        _B.state == BatchState.leased,
    )


def renew(engine: Engine, held: Lease, ttl: float, now: float | None = None) -> bool:
    """Push the lease's expiry out by `ttl`; False when the lease was lost (expired and taken)."""
    now = time.time() if now is None else now
    with write_transaction(engine) as connection:
        result = connection.execute(update(job_batches).where(_held(held)).values(lease_expires_at=now + ttl))
        return result.rowcount == 1


def advance(engine: Engine, held: Lease, row: int, ttl: float, now: float | None = None) -> bool:
    """Row by row: the worker is about to run row `row` (its lease renewed, and the row's clock started);
    False when the lease was lost."""
    now = time.time() if now is None else now
    with write_transaction(engine) as connection:
        result = connection.execute(
            update(job_batches).where(_held(held)).values(row_cursor=row, leased_at=now, lease_expires_at=now + ttl)
        )
        return result.rowcount == 1


def complete(engine: Engine, held: Lease, outcome: Outcome, now: float | None = None) -> bool:
    """Mark the batch done with the parts it wrote; False (and nothing changes) if the lease was lost."""
    now = time.time() if now is None else now
    values: dict[str, Any] = {
        "state": BatchState.done,
        "lease_token": None,
        "lease_expires_at": None,
        "ok_rows": outcome.ok_rows,
        "failed_rows": outcome.failed_rows,
        "dead_payload": outcome.dead_payload,
        "part_schema": outcome.part_schema,
        "dead_errors": outcome.dead_errors,
        "row_cursor": None,
        "payload": b"",  # the rows now live in the parts; keep the store small
        "done_at": now,
    }
    values.update(_part_values("part", outcome.part))
    values.update(_part_values("failed", outcome.failed_part))
    with write_transaction(engine) as connection:
        return connection.execute(update(job_batches).where(_held(held)).values(**values)).rowcount == 1


def _part_values(prefix: str, part: Part | None) -> dict[str, Any]:
    names = (
        ("part", "part_digest", "part_bytes") if prefix == "part" else ("failed_part", "failed_digest", "failed_bytes")
    )
    values = (part.path, part.digest, part.size) if part else (None, None, None)
    return dict(zip(names, values, strict=True))


def fail(engine: Engine, held: Lease, error: str, now: float | None = None) -> bool:
    """The whole batch raised: back to pending after a backoff, one failure more."""
    now = time.time() if now is None else now
    failures = held.failures + 1
    with write_transaction(engine) as connection:
        result = connection.execute(
            update(job_batches)
            .where(_held(held))
            .values(
                state=BatchState.pending,
                lease_token=None,
                lease_expires_at=None,
                row_cursor=None,
                failures=failures,
                last_error=error,
                not_before=now + backoff(failures),
            )
        )
        return result.rowcount == 1


def release(engine: Engine, held: Lease) -> bool:
    """Give the batch back untouched (the worker is stopping before it ran it); no failure is counted."""
    with write_transaction(engine) as connection:
        result = connection.execute(
            update(job_batches)
            .where(_held(held))
            .values(state=BatchState.pending, lease_token=None, lease_expires_at=None, row_cursor=None)
        )
        return result.rowcount == 1


def release_all(engine: Engine, job_id: str) -> int:
    """The job stopped and its workers are gone: every leased batch goes back to pending, no failure counted."""
    with write_transaction(engine) as connection:
        return release_leased(connection, job_id)


def release_leased(connection: Connection, job_id: str) -> int:
    """`release_all` inside the caller's transaction."""
    result = connection.execute(
        update(job_batches)
        .where(_B.job_id == job_id, _B.state == BatchState.leased)
        .values(state=BatchState.pending, lease_token=None, lease_expires_at=None, row_cursor=None)
    )
    return int(result.rowcount)


def live_leases(connection: Connection, job_id: str, now: float) -> list[Holding]:
    """The job's batches whose lease has not expired yet: a worker holds them, or did moments ago."""
    found = connection.execute(
        select(_B.seq, _B.lease_owner, _B.leased_at, _B.lease_expires_at, _B.row_cursor)
        .where(_B.job_id == job_id, _B.state == BatchState.leased, _B.lease_expires_at >= now)
        .order_by(_B.lease_expires_at.desc())
    ).all()
    return [Holding(r.seq, r.lease_owner, r.leased_at, r.lease_expires_at, r.row_cursor) for r in found]


def release_owner(engine: Engine, job_id: str, owner: str) -> list[int]:
    """The runner stopped this worker (it is shutting down): its batches go back untouched, no failure
    counted and no row blamed. Returns their seqs."""
    with write_transaction(engine) as connection:
        mine = and_(_B.job_id == job_id, _B.lease_owner == owner, _B.state == BatchState.leased)
        seqs = [int(seq) for seq in connection.execute(select(_B.seq).where(mine).order_by(_B.seq)).scalars()]
        connection.execute(
            update(job_batches)
            .where(mine)
            .values(state=BatchState.pending, lease_token=None, lease_expires_at=None, row_cursor=None)
        )
        return seqs


def abandon(
    engine: Engine, job_id: str, owner: str, error: str, deaths: int = 1, now: float | None = None
) -> list[Blame]:
    """The owner is gone (its process exited, or the runner killed it): its batches go back to the queue now,
    each losing its attempt as `_abandoned` says. `deaths` is what the attempt weighs against the row it was
    on: `ROW_DEATHS` when the runner knows the row is to blame (it ran past batch_timeout)."""
    now = time.time() if now is None else now
    blamed = []
    with write_transaction(engine) as connection:
        held = connection.execute(
            select(_B.seq, _B.failures, _B.row_cursor, _B.crashed_rows).where(
                _B.job_id == job_id, _B.lease_owner == owner, _B.state == BatchState.leased
            )
        ).all()
        for row in held:
            values = _abandoned(row, error, deaths)
            connection.execute(
                update(job_batches)
                .where(_B.job_id == job_id, _B.seq == row.seq, _B.state == BatchState.leased, _B.lease_owner == owner)
                .values(state=BatchState.pending, lease_token=None, lease_expires_at=None, not_before=now, **values)
            )
            isolated = row.row_cursor is not None and row.row_cursor in poison_rows(values["crashed_rows"])
            blamed.append(Blame(row.seq, row.row_cursor, isolated))
    return blamed


def holdings(engine: Engine, job_id: str) -> list[Holding]:
    """Every leased batch of the job, for the runner's health checks."""
    with read_transaction(engine) as connection:
        found = connection.execute(
            select(_B.seq, _B.lease_owner, _B.leased_at, _B.lease_expires_at, _B.row_cursor).where(
                _B.job_id == job_id, _B.state == BatchState.leased
            )
        ).all()
    return [Holding(r.seq, r.lease_owner, r.leased_at, r.lease_expires_at or 0.0, r.row_cursor) for r in found]


def progress(connection: Connection, job_id: str) -> Progress:
    done = _B.state == BatchState.done
    row = connection.execute(
        select(
            func.count(),
            func.coalesce(func.sum(case((done, 1), else_=0)), 0),
            func.coalesce(func.sum(case((and_(done, _B.failed_rows > 0), 1), else_=0)), 0),
            func.coalesce(func.sum(_B.ok_rows), 0),
            func.coalesce(func.sum(_B.failed_rows), 0),
            func.coalesce(func.sum(case((_B.state == BatchState.leased, 1), else_=0)), 0),
        ).where(_B.job_id == job_id)
    ).one()
    return Progress(*(int(value) for value in row))


def unfinished(connection: Connection, job_id: str) -> tuple[int, int]:
    """(batches, rows) stored and not done yet."""
    row = connection.execute(
        select(func.count(), func.coalesce(func.sum(_B.rows), 0)).where(
            _B.job_id == job_id, _B.state != BatchState.done
        )
    ).one()
    return int(row[0]), int(row[1])


def read_progress(engine: Engine, job_id: str) -> Progress:
    with read_transaction(engine) as connection:
        return progress(connection, job_id)


def last_position(connection: Connection, job_id: str) -> tuple[int, int]:
    """(source index, row offset) where splitting the inputs continues: after the last batch cut from them.

    Not where seq continues: retry batches (dead letters queued again) may come after that batch, so new
    batches take `next_seq`."""
    row = connection.execute(
        select(_B.source_index, _B.source_offset, _B.rows)
        .where(_B.job_id == job_id, _B.parent_seq.is_(None))
        .order_by(_B.seq.desc())
        .limit(1)
    ).first()
    if row is None:
        return 0, 0
    return row.source_index, row.source_offset + row.rows


def next_seq(connection: Connection, job_id: str) -> int:
    found = connection.execute(select(func.max(_B.seq)).where(_B.job_id == job_id)).scalar()
    return 0 if found is None else int(found) + 1


def requeue_dead(connection: Connection, job_id: str) -> tuple[int, int]:
    """`jobs retry`: each batch's dead-lettered rows become a new batch; returns (batches, rows) queued.

    The parent keeps its output part and forgets its dead letters (their file is cleaned at the end), so
    a row that now works appears once, in the new batch's part.
    """
    from shipyard.jobs import codec
    from shipyard.jobs.scoring import ROW_COLUMN

    parents = connection.execute(
        select(_B.seq, _B.source_index, _B.dead_payload)
        .where(_B.job_id == job_id, _B.state == BatchState.done, _B.failed_rows > 0)
        .order_by(_B.seq)
    ).all()
    seq = next_seq(connection, job_id)
    rows = 0
    for parent in parents:
        dead = codec.decode(bytes(parent.dead_payload))
        numbers = [int(n) for n in dead.column(ROW_COLUMN).to_pylist()]
        table = dead.drop_columns([ROW_COLUMN])
        enqueue(
            connection, job_id, seq, parent.source_index, -1, table.num_rows, codec.encode(table), numbers, parent.seq
        )
        connection.execute(
            update(job_batches)
            .where(_B.job_id == job_id, _B.seq == parent.seq)
            .values(
                failed_rows=0,
                failed_part=None,
                failed_digest=None,
                failed_bytes=None,
                dead_payload=None,
                dead_errors=None,
            )
        )
        seq += 1
        rows += table.num_rows
    return len(parents), rows


def parts(connection: Connection, job_id: str) -> tuple[list[Part], list[Part]]:
    """The output parts and dead-letter parts the store records, in batch order."""
    found = connection.execute(
        select(_B.part, _B.ok_rows, _B.part_digest, _B.part_bytes, _B.failed_part, _B.failed_rows)
        .add_columns(_B.failed_digest, _B.failed_bytes)
        .where(_B.job_id == job_id, _B.state == BatchState.done)
        .order_by(_B.seq)
    ).all()
    output = [Part(r.part, r.ok_rows, r.part_digest, r.part_bytes) for r in found if r.part]
    failed = [Part(r.failed_part, r.failed_rows, r.failed_digest, r.failed_bytes) for r in found if r.failed_part]
    return output, failed


def stored_parts(connection: Connection, job_id: str) -> list[tuple[int, Part, bytes | None]]:
    """(seq, output part, its recorded schema) of every done batch that wrote an output part."""
    found = connection.execute(
        select(_B.seq, _B.part, _B.ok_rows, _B.part_digest, _B.part_bytes, _B.part_schema)
        .where(_B.job_id == job_id, _B.state == BatchState.done, _B.part.is_not(None))
        .order_by(_B.seq)
    ).all()
    return [
        (
            r.seq,
            Part(r.part, r.ok_rows, r.part_digest, r.part_bytes),
            None if r.part_schema is None else bytes(r.part_schema),
        )
        for r in found
    ]


def retype_part(connection: Connection, job_id: str, seq: int, part: Part, schema: bytes) -> None:
    """The batch's output part was rewritten to the job's schema under a new name."""
    connection.execute(
        update(job_batches)
        .where(_B.job_id == job_id, _B.seq == seq)
        .values(part=part.path, part_digest=part.digest, part_bytes=part.size, part_schema=schema)
    )


def error_counts(connection: Connection, job_id: str, top: int = 5) -> list[dict[str, Any]]:
    """The job's most frequent distinct errors: of its dead letters (rows) and of its failed batch attempts."""
    found = connection.execute(
        select(_B.last_error, _B.dead_errors).where(
            _B.job_id == job_id, or_(_B.last_error.is_not(None), _B.dead_errors.is_not(None))
        )
    ).all()
    return top_errors([(row.last_error, row.dead_errors or {}) for row in found], top)


_WORKER_NAME = re.compile(r"\b(?:worker|hook)-[0-9a-f]{6}\b")


def _unnamed(error: str) -> str:
    """The error with its worker's name left out, so that one problem on many workers counts as one."""
    return _WORKER_NAME.sub("a worker", error)


def top_errors(batches: list[tuple[str | None, dict[str, int]]], top: int = 5) -> list[dict[str, Any]]:
    """(last error of a batch's attempts, its dead letters' errors with row counts) per batch, as the `top`
    largest counts: `{"error": ..., "count": 3, "of": "rows dead-lettered" | "batch attempts failed"}`."""
    rows: dict[str, int] = {}
    attempts: dict[str, int] = {}
    for last_error, dead in batches:
        if last_error:
            attempts[_unnamed(last_error)] = attempts.get(_unnamed(last_error), 0) + 1
        for error, count in dead.items():
            rows[_unnamed(error)] = rows.get(_unnamed(error), 0) + int(count)
    counted = [(count, "rows dead-lettered", error) for error, count in rows.items()]
    counted += [(count, "batch attempts failed", error) for error, count in attempts.items()]
    counted.sort(key=lambda item: (-item[0], item[1] != "rows dead-lettered", item[2]))
    return [{"error": error, "count": count, "of": of} for count, of, error in counted[:top]]
