"""A thread that splits a job's inputs into batches in the store, picking up where the stored ones end.

A resumed split reads on from the last batch cut from the inputs (its source and row offset) but numbers
its batches after every stored one: a `jobs retry` may have queued dead letters as batches beyond it.

It stays at most `ahead` batches ahead of the workers (batches stored and not done), so the store holds
a window of the input, not a copy of all of it; done batches drop their rows (`queue.complete`).
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from shipyard.errors import ShipyardError
from shipyard.jobs import codec, queue
from shipyard.jobs.errors import StoreFailed
from shipyard.jobs.scoring import describe
from shipyard.jobs.splitter import Source, Types, split
from shipyard.store import read_transaction, write_transaction
from shipyard.store.tables import job_batches

log = logging.getLogger("shipyard.jobs.enqueuer")
_ROOM_POLL = 0.05


class Enqueuer(threading.Thread):
    """Runs once; afterwards `finished` is True, or `error` says why the inputs could not be read."""

    def __init__(
        self,
        engine: Engine,
        job_id: str,
        sources: list[Source],
        batch_size: int,
        types: Types | None = None,
        ahead: int = 64,
    ) -> None:
        super().__init__(name=f"enqueue-{job_id}", daemon=True)
        self.engine = engine
        self.job_id = job_id
        self.sources = sources
        self.batch_size = batch_size
        self.types = types or {}
        """The columns' declared types (the API's schema)."""
        self.ahead = ahead
        self.should_stop = threading.Event()
        self.finished = False
        self.error: str | None = None
        self.seq = 0
        """The seq of the next batch to store."""

    def run(self) -> None:
        try:
            self._enqueue()
        except ShipyardError as exc:
            self.error = exc.message
        except SQLAlchemyError as exc:  # the database's first line, never its SQL and parameters
            log.exception("storing batch %d of job %s failed", self.seq, self.job_id)
            detail = str(getattr(exc, "orig", None) or type(exc).__name__)
            self.error = StoreFailed(f"batch {self.seq} of job {self.job_id!r}", detail).message
        except Exception as exc:  # a reader's surprise must fail the job with its text, not kill the runner
            log.exception("enqueuing job %s failed", self.job_id)
            self.error = f"splitting the inputs failed: {_first_line(describe(exc))}"

    def _enqueue(self) -> None:
        with read_transaction(self.engine) as connection:
            source_index, offset = queue.last_position(connection, self.job_id)
            self.seq = queue.next_seq(connection, self.job_id)
        room = 0
        for chunk in split(self.sources, self.batch_size, (source_index, offset), self.types):
            room = room if room > 0 else self._wait_for_room()
            if self.should_stop.is_set():
                return
            room -= 1
            payload = codec.encode(chunk.table)
            with write_transaction(self.engine) as connection:
                queue.enqueue(
                    connection, self.job_id, self.seq, chunk.source_index, chunk.offset, chunk.table.num_rows, payload
                )
            self.seq += 1
        self.finished = True

    def _wait_for_room(self) -> int:
        """Until fewer than `ahead` batches wait for workers (or the job stops); how many may be added."""
        while not self.should_stop.is_set():
            with read_transaction(self.engine) as connection:
                room = self.ahead - queue.unfinished(connection, self.job_id)[0]
            if room > 0:
                return room
            self.should_stop.wait(_ROOM_POLL)
        return 0

    def totals(self) -> tuple[int, int]:
        """(batches, rows) of the inputs, once finished (retry batches are not counted)."""
        c = job_batches.c
        with read_transaction(self.engine) as connection:
            row = connection.execute(
                select(func.count(), func.coalesce(func.sum(c.rows), 0)).where(
                    c.job_id == self.job_id, c.parent_seq.is_(None)
                )
            ).one()
        return int(row[0]), int(row[1])


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0]
