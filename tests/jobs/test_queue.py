"""The leased queue on SQLite and PostgreSQL: leases, renewal, expiry, no double lease, dead-letter bookkeeping."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from sqlalchemy import Engine, select, update

from shipyard.jobs import codec, queue, records
from shipyard.jobs.queue import Outcome, Part
from shipyard.jobs.scoring import ROW_COLUMN
from shipyard.jobs.states import ROW_DEATHS, Mode
from shipyard.store import create_store_engine, migrate, read_transaction, write_transaction
from shipyard.store.tables import job_batches

JOB = "job-1"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_store_engine(database_url)
    migrate(engine)
    with write_transaction(engine) as connection:
        records.insert_job(
            connection,
            {
                "id": JOB,
                "api": "double",
                "project": "/p",
                "spec": {},
                "inputs": [],
                "output": "/out",
                "format": "parquet",
                "batch_size": 2,
                "workers": 1,
                "max_retries": 1,
            },
        )
    yield engine
    engine.dispose()


def _fill(engine: Engine, batches: int) -> None:
    with write_transaction(engine) as connection:
        for seq in range(batches):
            table = pa.table({"id": [seq * 2, seq * 2 + 1]})
            queue.enqueue(connection, JOB, seq, 0, seq * 2, 2, codec.encode(table))


def _done(rows: int = 2, failed: int = 0) -> Outcome:
    return Outcome(rows, failed, Part("part", rows, "sha256:x", 1) if rows else None)


def test_lease_hands_out_batches_in_order_once(engine: Engine) -> None:
    _fill(engine, 2)
    first = queue.lease(engine, JOB, "w1", ttl=30, max_retries=1)
    second = queue.lease(engine, JOB, "w2", ttl=30, max_retries=1)
    assert first is not None and second is not None
    assert (first.seq, second.seq) == (0, 1)
    assert codec.decode(first.payload).column("id").to_pylist() == [0, 1]
    assert (first.attempt, first.mode) == (1, Mode.batch)
    assert queue.lease(engine, JOB, "w3", ttl=30, max_retries=1) is None


def test_an_expired_lease_is_taken_over_and_counts_as_a_failure(engine: Engine) -> None:
    _fill(engine, 1)
    held = queue.lease(engine, JOB, "w1", ttl=10, max_retries=1, now=1000)
    assert held is not None
    assert queue.lease(engine, JOB, "w2", ttl=10, max_retries=1, now=1009) is None
    taken = queue.lease(engine, JOB, "w2", ttl=10, max_retries=1, now=1011)
    assert taken is not None and taken.attempt == 2 and taken.failures == 1
    assert "lease of w1 expired" in (taken.last_error or "")
    assert not queue.renew(engine, held, ttl=10, now=1012)
    assert not queue.complete(engine, held, _done(), now=1012), "a lost lease must not mark the batch done"
    assert queue.complete(engine, taken, _done(), now=1012)
    assert queue.read_progress(engine, JOB).batches_done == 1


def test_renewal_keeps_the_lease(engine: Engine) -> None:
    _fill(engine, 1)
    held = queue.lease(engine, JOB, "w1", ttl=10, max_retries=1, now=1000)
    assert held is not None
    assert queue.renew(engine, held, ttl=10, now=1008)
    assert queue.lease(engine, JOB, "w2", ttl=10, max_retries=1, now=1015) is None
    assert queue.lease(engine, JOB, "w2", ttl=10, max_retries=1, now=1019) is not None


def test_failures_back_off_then_run_row_by_row_then_dead_letter(engine: Engine) -> None:
    _fill(engine, 1)
    held = queue.lease(engine, JOB, "w1", ttl=10, max_retries=1, now=1000)
    assert held is not None and held.mode is Mode.batch
    assert queue.fail(engine, held, "boom", now=1000)
    assert queue.lease(engine, JOB, "w1", ttl=10, max_retries=1, now=1000.1) is None, "backoff"
    again = queue.lease(engine, JOB, "w1", ttl=10, max_retries=1, now=1001)
    assert again is not None and again.mode is Mode.batch and again.last_error == "boom"
    assert queue.fail(engine, again, "boom", now=1001)
    rows = queue.lease(engine, JOB, "w1", ttl=10, max_retries=1, now=1100)
    assert rows is not None and rows.mode is Mode.rows
    for now in (1200, 1300):  # the worker dies twice outside any row (say, writing the part)
        rows = queue.lease(engine, JOB, "w2", ttl=10, max_retries=1, now=now)
        assert rows is not None and rows.mode is Mode.rows and rows.crashed_rows == {}
    crashed = queue.lease(engine, JOB, "w2", ttl=10, max_retries=1, now=1400)
    assert crashed is not None and crashed.mode is Mode.dead, "it kept dying outside any one row"


def _in_row_mode(engine: Engine, owner: str = "w1", now: float = 1100) -> queue.Lease:
    held = queue.lease(engine, JOB, owner, ttl=10, max_retries=0, now=now - 100)
    assert held is not None and queue.fail(engine, held, "boom", now=now - 100)
    rows = queue.lease(engine, JOB, owner, ttl=10, max_retries=0, now=now)
    assert rows is not None and rows.mode is Mode.rows
    return rows


def test_a_row_that_workers_die_on_twice_is_set_aside_and_only_it(engine: Engine) -> None:
    _fill(engine, 1)
    rows = _in_row_mode(engine)
    assert queue.advance(engine, rows, 0, ttl=10, now=1100)
    assert queue.advance(engine, rows, 1, ttl=10, now=1101)
    (holding,) = queue.holdings(engine, JOB)
    assert (holding.owner, holding.row_cursor, holding.leased_at, holding.expires_at) == ("w1", 1, 1101, 1111)
    assert queue.abandon(engine, JOB, "w1", "w1 exited with code 3", now=1102) == [queue.Blame(0, 1, False)]
    again = queue.lease(engine, JOB, "w2", ttl=10, max_retries=0, now=1102)
    assert again is not None and again.mode is Mode.rows and again.failures == 1, "no failure counted"
    assert again.crashed_rows == {} and again.last_error == "w1 exited with code 3", "one death: the row runs again"
    assert not queue.advance(engine, rows, 0, ttl=10, now=1103), "the dead worker's lease is gone"
    assert queue.abandon(engine, JOB, "w1", "late", now=1104) == [], "and it holds nothing to abandon"
    assert queue.advance(engine, again, 1, ttl=10, now=1105)
    assert queue.abandon(engine, JOB, "w2", "w2 exited with code 3", now=1106) == [queue.Blame(0, 1, True)]
    third = queue.lease(engine, JOB, "w3", ttl=10, max_retries=0, now=1106)
    assert third is not None and third.failures == 1 and third.crashed_rows == {1: "w2 exited with code 3"}


def test_a_row_that_ran_past_batch_timeout_is_set_aside_at_once(engine: Engine) -> None:
    _fill(engine, 1)
    rows = _in_row_mode(engine)
    assert queue.advance(engine, rows, 1, ttl=10, now=1100)
    (blame,) = queue.abandon(engine, JOB, "w1", "w1 was killed: row 1 ran longer", deaths=ROW_DEATHS, now=1101)
    assert blame.isolated
    again = queue.lease(engine, JOB, "w2", ttl=10, max_retries=0, now=1101)
    assert again is not None and again.crashed_rows == {1: "w1 was killed: row 1 ran longer"}


def test_a_row_blamed_before_deaths_were_counted_stays_set_aside(engine: Engine) -> None:
    """Batches stored by an older Shipyard name the crashed row with its error alone: it stays poison."""
    _fill(engine, 1)
    with write_transaction(engine) as connection:
        connection.execute(update(job_batches).values(crashed_rows={"1": "w0 exited with code 3"}))
    held = queue.lease(engine, JOB, "w1", ttl=10, max_retries=0)
    assert held is not None and held.crashed_rows == {1: "w0 exited with code 3"}


def test_a_worker_the_runner_stopped_gives_its_batch_back_without_a_failure(engine: Engine) -> None:
    _fill(engine, 2)
    rows = _in_row_mode(engine)
    assert queue.advance(engine, rows, 1, ttl=10, now=1100)
    assert queue.release_owner(engine, JOB, "w1") == [0]
    assert queue.release_owner(engine, JOB, "w1") == []
    again = queue.lease(engine, JOB, "w2", ttl=10, max_retries=0, now=1101)
    assert again is not None and again.seq == 0 and again.failures == 1 and again.crashed_rows == {}
    assert queue.holdings(engine, JOB)[0].row_cursor is None


def test_a_lease_that_expired_with_its_runner_is_taken_over_without_a_failure(engine: Engine) -> None:
    """The runner and its workers were killed together (a machine restart): the next runner's workers
    take the batch over, with no failure counted and no row blamed."""
    _fill(engine, 1)
    with write_transaction(engine) as connection:
        records.set_values(connection, JOB, runner="runner-a")
    rows = _in_row_mode(engine)
    assert queue.advance(engine, rows, 1, ttl=10, now=1100)
    with write_transaction(engine) as connection:
        records.set_values(connection, JOB, runner="runner-b")
    taken = queue.lease(engine, JOB, "w2", ttl=10, max_retries=0, now=1200)
    assert taken is not None and taken.failures == 1 and taken.crashed_rows == {}
    assert queue.advance(engine, taken, 1, ttl=10, now=1200)
    taken_again = queue.lease(engine, JOB, "w3", ttl=10, max_retries=0, now=1300)
    assert taken_again is not None, "runner-b watched w2, so this expiry counts"
    with read_transaction(engine) as connection:
        crashed = connection.execute(select(job_batches.c.crashed_rows)).scalar()
    assert crashed == {"1": {"error": "the lease of w2 expired: the worker hung or died", "deaths": 1}}


def test_dead_letters_are_requeued_as_new_batches_once(engine: Engine) -> None:
    _fill(engine, 2)
    first = queue.lease(engine, JOB, "w1", ttl=30, max_retries=1)
    assert first is not None
    dead = pa.table({"id": [1], ROW_COLUMN: pa.array([1], pa.int64())})
    failed = Part("_failed/part-000000-1.jsonl", 1, "sha256:y", 1)
    queue.complete(engine, first, Outcome(1, 1, Part("p0", 1, "sha256:x", 1), failed, codec.encode(dead)))
    second = queue.lease(engine, JOB, "w1", ttl=30, max_retries=1)
    assert second is not None
    queue.complete(engine, second, _done())
    progress = queue.read_progress(engine, JOB)
    assert (progress.batches_done, progress.batches_failed, progress.rows_done, progress.rows_failed) == (2, 1, 3, 1)
    with write_transaction(engine) as connection:
        assert queue.requeue_dead(connection, JOB) == (1, 1)
        assert queue.requeue_dead(connection, JOB) == (0, 0)
    child = queue.lease(engine, JOB, "w1", ttl=30, max_retries=1)
    assert child is not None and child.seq == 2 and child.row_number(0) == 1
    assert codec.decode(child.payload).column_names == ["id"]
    progress = queue.read_progress(engine, JOB)
    assert (progress.batches, progress.rows_failed, progress.has_work) == (3, 0, True)


def test_no_batch_is_leased_twice_by_competing_processes(engine: Engine, tmp_path: Path) -> None:
    """Four processes lease as fast as they can; each batch is held by exactly one of them."""
    _fill(engine, 60)
    go = tmp_path / "go"
    script = textwrap.dedent(f"""
        import pathlib, sys, time
        from shipyard.jobs import queue
        from shipyard.jobs.queue import Outcome, Part
        from shipyard.settings import Settings
        from shipyard.store import create_store_engine
        engine = create_store_engine(Settings.from_env().database_url)
        pathlib.Path(sys.argv[1] + ".ready").touch()
        while not pathlib.Path({str(go)!r}).exists():  # start together, however slowly each one started
            time.sleep(0.01)
        with open(sys.argv[1], "w") as out:
            while (held := queue.lease(engine, {JOB!r}, sys.argv[1], ttl=60, max_retries=1)) is not None:
                out.write(f"{{held.seq}}\\n")
                time.sleep(0.01)  # hold it a moment, as a worker scoring it would: others lease meanwhile
                assert queue.complete(engine, held, Outcome(2, 0, Part("p", 2, "d", 1)))
    """)
    logs = [tmp_path / f"w{i}.log" for i in range(4)]
    processes = [subprocess.Popen([sys.executable, "-c", script, str(log)]) for log in logs]
    deadline = time.monotonic() + 60
    while not all(Path(f"{log}.ready").exists() for log in logs) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    assert all(process.wait(60) == 0 for process in processes)
    leased = [int(line) for log in logs for line in log.read_text().split()]
    assert sorted(leased) == list(range(60))
    assert sum(1 for log in logs if log.read_text()) >= 2, "the processes should have shared the work"
    assert queue.read_progress(engine, JOB).batches_done == 60


def test_payloads_are_compressed_and_uncompressed_ones_still_read(engine: Engine) -> None:
    table = pa.table({"id": list(range(5000)), "x": [1.5] * 5000})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:  # as Shipyard stored batches before compressing
        writer.write_table(table)
    plain = sink.getvalue().to_pybytes()
    packed = codec.encode(table)
    assert len(packed) < len(plain) / 2
    assert codec.decode(packed).equals(table) and codec.decode(plain).equals(table)


def test_the_enqueuer_stays_a_window_ahead_of_the_workers_and_resumes(engine: Engine, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from shipyard.jobs.enqueuer import Enqueuer
    from shipyard.jobs.splitter import expand

    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"id": list(range(30))}), path)
    sources = expand([str(path)])
    first = Enqueuer(engine, JOB, sources, batch_size=2, ahead=4)
    first.start()
    deadline = time.monotonic() + 30
    while queue.read_progress(engine, JOB).batches < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # room for more, were it not bounded
    assert queue.read_progress(engine, JOB).batches == 4 and first.is_alive()
    for _ in range(3):  # workers catch up: three more fit
        held = queue.lease(engine, JOB, "w", ttl=30, max_retries=1)
        assert held is not None and queue.complete(engine, held, _done())
    while queue.read_progress(engine, JOB).batches < 7 and time.monotonic() < deadline:
        time.sleep(0.02)
    first.should_stop.set()
    first.join(10)
    assert not first.is_alive() and not first.finished and queue.read_progress(engine, JOB).batches == 7
    second = Enqueuer(engine, JOB, sources, batch_size=2, ahead=100)
    second.run()
    assert second.finished and second.totals() == (15, 30), "resumed after the stored batches, none twice"


def test_a_retry_while_splitting_numbers_its_batches_apart_from_the_resumed_split(
    engine: Engine, tmp_path: Path
) -> None:
    """Stopped mid-split with a dead letter, then retried: the requeued dead letter and the rest of the
    split each get their own seq, and every row is queued exactly once."""
    import pyarrow.parquet as pq

    from shipyard.jobs.enqueuer import Enqueuer
    from shipyard.jobs.splitter import expand

    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"id": list(range(30))}), path)
    sources = expand([str(path)])
    first = Enqueuer(engine, JOB, sources, batch_size=2, ahead=3)
    first.start()
    deadline = time.monotonic() + 30
    while queue.read_progress(engine, JOB).batches < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    first.should_stop.set()
    first.join(10)
    held = queue.lease(engine, JOB, "w", ttl=30, max_retries=1)
    assert held is not None and held.seq == 0
    dead = pa.table({"id": [1], ROW_COLUMN: pa.array([1], pa.int64())})
    failed = Part("_failed/part-000000-1.jsonl", 1, "sha256:y", 1)
    assert queue.complete(engine, held, Outcome(1, 1, Part("p0", 1, "sha256:x", 1), failed, codec.encode(dead)))
    with write_transaction(engine) as connection:
        assert queue.requeue_dead(connection, JOB) == (1, 1)
    second = Enqueuer(engine, JOB, sources, batch_size=2, ahead=100)
    second.run()
    assert second.error is None and second.finished
    assert second.totals() == (15, 30)
    queued = [0]  # the row the done batch scored
    while (held := queue.lease(engine, JOB, "w", ttl=30, max_retries=1)) is not None:
        queued += codec.decode(held.payload).column("id").to_pylist()
        assert queue.complete(engine, held, _done())
    assert sorted(queued) == list(range(30))


def test_the_enqueuer_reports_a_store_error_on_one_line_without_sql(engine: Engine, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from shipyard.jobs.enqueuer import Enqueuer
    from shipyard.jobs.splitter import expand

    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"id": list(range(4))}), path)
    enqueuer = Enqueuer(engine, "no-such-job", expand([str(path)]), batch_size=2, ahead=100)  # a foreign key fails
    enqueuer.run()
    assert enqueuer.error is not None and "\n" not in enqueuer.error
    assert "SQL" not in enqueuer.error and "INSERT" not in enqueuer.error and "[parameters" not in enqueuer.error
    assert enqueuer.error.startswith("the store could not record batch 0 of job 'no-such-job': "), enqueuer.error
