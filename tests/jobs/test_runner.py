"""Whole jobs with real worker processes: formats, bad rows, crashes of workers and runners, stop, timeout, retry."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from shipyard import jobs
from shipyard.jobs import JobRequest, queue, records
from shipyard.jobs.driver import DriverOptions
from shipyard.jobs.output import digest
from shipyard.jobs.runner import JobRunner, RunnerOptions
from shipyard.jobs.service import open_store
from shipyard.settings import Settings
from tests.jobs.conftest import assert_exactly_once, make_job_project, write_rows

Runner = Callable[..., object]


def _submit(project: Path, inputs: list[str], output: Path, **options: object) -> str:
    request = JobRequest("double", inputs, str(output), str(project), **options)  # type: ignore[arg-type]
    return jobs.submit(request, start_runner=False).id


def _wait_for(predicate: Callable[[], object], timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "csv"])
def test_a_job_over_files_of_every_format(tmp_path: Path, runner: Runner, fmt: str) -> None:
    project = make_job_project(tmp_path / "p", batch_size=4, workers=2, config=f"{{marks: {tmp_path / 'marks'}}}")
    inputs = [
        str(write_rows(tmp_path / "in" / f"{i}{suffix}", range(i * 10, i * 10 + 10)))
        for i, suffix in enumerate([".csv", ".jsonl", ".parquet", ".csv", ".jsonl", ".parquet"])
    ]
    job_id = _submit(project, inputs, tmp_path / "out", format=fmt)
    runner(only={job_id})
    job = jobs.wait(job_id, timeout=90)
    assert (job.state, job.rows_done, job.rows_failed, job.rows_total) == ("succeeded", 60, 0, 60)
    rows, failed = assert_exactly_once(tmp_path / "out", range(60))
    assert failed == []
    assert all(row["double"] == row["x"] * 2 for row in rows), "predictions sit beside the input columns"
    manifest = orjson.loads((tmp_path / "out" / "_manifest.json").read_bytes())
    first = manifest["parts"][0]
    assert first["path"] == f"part-000000-1.{fmt}"
    assert digest((tmp_path / "out" / first["path"]).read_bytes()) == first["digest"]
    per_part = [
        [row["id"] for row in rows[i : i + p["rows"]]]
        for i, p in zip(
            [sum(q["rows"] for q in manifest["parts"][:k]) for k in range(len(manifest["parts"]))],
            manifest["parts"],
            strict=True,
        )
    ]
    assert all(ids == sorted(ids) for ids in per_part), "row order within a part follows the input"
    assert {row["batch"] for row in rows} == {4, 2}, "batches of 4 rows; a file's last batch is smaller"
    hook = tmp_path / "marks" / "completed.json"
    _wait_for(hook.exists, what="on_job_complete")  # it runs once the job has ended
    assert json.loads(hook.read_text()) == {
        "id": job_id,
        "state": "succeeded",
        "rows": 60,
    }


def test_bad_rows_are_dead_lettered_alone_and_retry_reruns_only_them(
    database_url: str, tmp_path: Path, runner: Runner
) -> None:
    """On SQLite and on PostgreSQL: the whole job, its dead letters, the retry, and the runner's notes."""
    bad_file = tmp_path / "bad.json"
    bad_file.write_text("[5, 17]")
    project = make_job_project(
        tmp_path / "p", batch_size=10, workers=2, max_retries=1, config=f"{{bad_file: {bad_file}}}"
    )
    source = write_rows(tmp_path / "in.parquet", range(30))
    job_id = _submit(project, [str(source)], tmp_path / "out", id_column="id")
    runner(only={job_id})
    job = jobs.wait(job_id, timeout=90)
    assert (job.state, job.rows_done, job.rows_failed, job.batches_failed) == ("completed_with_failures", 28, 2, 2)
    rows, failed = assert_exactly_once(tmp_path / "out", range(30))
    assert set(rows[0]) == {"id", "double", "batch"}, "--id-column keeps only the id beside the predictions"
    assert [(row["id"], row["_row"], row["_error"]) for row in failed] == [
        (5, 5, "ValueError: cannot score x=5"),
        (17, 17, "ValueError: cannot score x=17"),
    ]
    assert failed[0]["_source"] == str(source)
    notes = [line.split(" runner: ", 1)[1] for line in jobs.logs(job_id) if " INFO runner: " in line]
    assert notes[1].startswith("[enqueuing] splitting 1 input file(s)")
    assert notes[-1].startswith("[completed_with_failures] every batch is done: 28 rows scored, 2 rows dead-lettered")
    bad_file.write_text("[]")
    jobs.retry(job_id, start_runner=False)
    assert not (tmp_path / "out" / "_manifest.json").exists(), "a retried job's folder is incomplete until it ends"
    runner(only={job_id})
    job = jobs.wait(job_id, timeout=90)
    assert (job.state, job.rows_done, job.rows_failed) == ("succeeded", 30, 0)
    rows, failed = assert_exactly_once(tmp_path / "out", range(30))
    assert not list((tmp_path / "out" / "_failed").iterdir()), "superseded dead letters are cleaned up"


def test_inputs_whose_fields_and_types_differ_make_one_output_table(tmp_path: Path, runner: Runner) -> None:
    project = make_job_project(tmp_path / "p", batch_size=2, workers=2, max_retries=0)
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.csv").write_text("id,x,tag\n0,1,\n1,2,\n")
    (inputs / "b.csv").write_text("id,x,tag\n2,3.5,text\n")
    (inputs / "c.jsonl").write_text('{"id": 3}\n{"id": 4, "x": 5}\n{"id": 5, "x": 6, "note": "keep me"}\n')
    job_id = _submit(project, [str(inputs)], tmp_path / "out")
    runner(only={job_id})
    job = jobs.wait(job_id, timeout=90)
    assert (job.state, job.rows_done, job.rows_failed) == ("completed_with_failures", 5, 1)
    _, failed = assert_exactly_once(tmp_path / "out", range(6))
    assert [(row["id"], row["_error"]) for row in failed] == [
        (3, "TypeError: unsupported operand type(s) for *: 'NoneType' and 'int'")
    ], "the record without x is the only one dead-lettered"
    whole = pq.read_table(tmp_path / "out").sort_by("id")  # the folder reads as one table
    assert whole.column("x").to_pylist() == [1.0, 2.0, 3.5, 5.0, 6.0]
    assert whole.column("tag").to_pylist() == [None, None, "text", None, None]
    assert whole.column("note").to_pylist() == [None, None, None, None, "keep me"]


def test_a_value_not_of_its_declared_type_dead_letters_its_row_not_the_job(tmp_path: Path, runner: Runner) -> None:
    project = make_job_project(tmp_path / "p", batch_size=10, max_retries=0, schema="{fields: {x: {type: int}}}")
    source = tmp_path / "in.csv"
    source.write_text("id,x\n" + "".join(f"{i},{'abc' if i == 20 else i}\n" for i in range(30)))
    items = [{"id": 30, "x": 30}, {"id": 31, "x": [31]}]
    job_id = _submit(project, [str(source)], tmp_path / "out", items=items)
    runner(only={job_id})
    for attempt in ("first run", "retry"):
        job = jobs.wait(job_id, timeout=90)
        assert (job.state, job.rows_done, job.rows_failed) == ("completed_with_failures", 30, 2), attempt
        rows, failed = assert_exactly_once(tmp_path / "out", range(32))
        assert [(r["id"], r["x"], r["_source"], r["_row"], r["_error"]) for r in failed] == [
            (20, "abc", str(source), 20, "'x' is 'abc', which is not an int as the API's schema declares"),
            (31, [31], "--items", 1, "'x' is [31], which is not an int as the API's schema declares"),
        ], attempt
        assert {row["batch"] for row in rows} == {10, 9, 1}, "the handler never sees the rows"
        if attempt == "first run":
            jobs.retry(job_id, start_runner=False)
            runner(only={job_id})


def test_a_handler_without_predict_batch_runs_per_row(tmp_path: Path, runner: Runner) -> None:
    project = make_job_project(tmp_path / "p", handler="handlers.py:PerRow", batch_size=8, max_retries=0)
    job_id = _submit(project, [str(write_rows(tmp_path / "in.jsonl", range(20)))], tmp_path / "out", format="jsonl")
    runner(only={job_id})
    assert jobs.wait(job_id, timeout=90).state == "completed_with_failures"
    rows, failed = assert_exactly_once(tmp_path / "out", range(20))
    assert [row["id"] for row in failed] == [13]
    assert all(row["prediction"] == row["x"] + 1 for row in rows)


def test_sigkill_of_a_worker_mid_batch_loses_and_doubles_nothing(
    database_url: str, tmp_path: Path, runner: Runner
) -> None:
    marks = tmp_path / "marks"
    project = make_job_project(tmp_path / "p", batch_size=10, workers=2, config=f"{{sleep: 0.3, marks: {marks}}}")
    job_id = _submit(project, [str(write_rows(tmp_path / "in.parquet", range(200)))], tmp_path / "out")
    runner(only={job_id})
    _wait_for(lambda: marks.exists() and any(marks.iterdir()), what="a worker to start a batch")
    victim = int(next(marks.iterdir()).name.split("-")[0])
    os.kill(victim, signal.SIGKILL)
    job = jobs.wait(job_id, timeout=90)
    assert (job.state, job.rows_done) == ("succeeded", 200)
    assert_exactly_once(tmp_path / "out", range(200))
    events = [event.message for event in jobs.get(job_id).events]
    assert any("exited with signal SIGKILL" in message for message in events), events


def test_sigkill_of_the_runner_and_its_workers_mid_job_resumes_and_counts_no_failure(
    database_url: str, tmp_path: Path, runner: Runner
) -> None:
    """As after a machine restart: the runner and every worker die at once. The next runner takes the job
    over, the dead workers' leases expire, and their batches run again with no failed attempt counted."""
    marks = tmp_path / "marks"
    project = make_job_project(tmp_path / "p", batch_size=10, workers=2, config=f"{{sleep: 0.2, marks: {marks}}}")
    job_id = _submit(project, [str(write_rows(tmp_path / "in.csv", range(300)))], tmp_path / "out")
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "shipyard", "jobs", "run-scheduler", "--lease-ttl", "3"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the runner and its workers
    )
    try:
        _wait_for(lambda: marks.exists() and len(list(marks.iterdir())) >= 4, what="batches to run")
        os.killpg(scheduler.pid, signal.SIGKILL)
        scheduler.wait(10)
        before = jobs.get(job_id)
        assert not before.is_finished and before.rows_done < 300
        runner(only={job_id})
        job = jobs.wait(job_id, timeout=90)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(scheduler.pid, signal.SIGKILL)
    assert (job.state, job.rows_done) == ("succeeded", 300)
    assert_exactly_once(tmp_path / "out", range(300))
    assert any("which stopped" in event.message for event in jobs.get(job_id).events)
    assert job.errors == [], "leases lost with their runner are no batch's failure"


def test_stop_drains_workers_keeps_parts_and_retry_finishes(tmp_path: Path, runner: Runner) -> None:
    project = make_job_project(tmp_path / "p", batch_size=5, workers=1, config="{sleep: 0.3}")
    job_id = _submit(project, [str(write_rows(tmp_path / "in.parquet", range(100)))], tmp_path / "out")
    runner(only={job_id})
    _wait_for(lambda: jobs.get(job_id, with_events=False).batches_done >= 2, what="two batches")
    stray = tmp_path / "out" / "part-000099-7.parquet"  # as a worker that lost its lease may leave
    stray.write_bytes(b"leftover")
    jobs.stop(job_id)
    job = jobs.wait(job_id, timeout=60)
    assert job.state == "stopped" and 0 < job.rows_done < 100
    parts = sorted((tmp_path / "out").glob("part-*"))
    assert sum(pq.read_table(p).num_rows for p in parts) == job.rows_done, "finished parts are kept"
    assert stray.name not in {p.name for p in parts}, "what the store does not list is cleaned up"
    manifest = orjson.loads((tmp_path / "out" / "_manifest.json").read_bytes())
    assert (manifest["complete"], manifest["state"], manifest["rows"]) == (False, "stopped", job.rows_done)
    assert sorted(part["path"] for part in manifest["parts"]) == [p.name for p in parts]
    jobs.retry(job_id, start_runner=False)
    runner(only={job_id})
    assert jobs.wait(job_id, timeout=90).state == "succeeded"
    assert_exactly_once(tmp_path / "out", range(100))


def test_a_job_stopped_while_splitting_with_dead_letters_retries_every_row_once(tmp_path: Path, runner: Runner) -> None:
    """The input is split at most 32 batches ahead, so a stop mostly lands while the job is enqueuing."""
    bad_file = tmp_path / "bad.json"
    bad_file.write_text("[2]")
    project = make_job_project(
        tmp_path / "p", batch_size=1, workers=1, max_retries=0, config=f"{{bad_file: {bad_file}, sleep: 0.01}}"
    )
    job_id = _submit(project, [str(write_rows(tmp_path / "in.parquet", range(100)))], tmp_path / "out")
    runner(only={job_id})
    _wait_for(lambda: jobs.get(job_id, with_events=False).rows_failed >= 1, what="a dead letter")
    assert jobs.get(job_id, with_events=False).state == "enqueuing"
    jobs.stop(job_id)
    assert jobs.wait(job_id, timeout=60).state == "stopped"
    bad_file.write_text("[]")
    jobs.retry(job_id, start_runner=False)
    runner(only={job_id})
    job = jobs.wait(job_id, timeout=90)
    assert (job.state, job.rows_done, job.rows_failed, job.error) == ("succeeded", 100, 0, None), job.reason
    assert_exactly_once(tmp_path / "out", range(100))


def test_timeout_ends_the_job_as_timed_out_and_a_retry_gets_a_fresh_clock(tmp_path: Path, runner: Runner) -> None:
    sleep = tmp_path / "sleep"
    sleep.write_text("0.5")
    project = make_job_project(tmp_path / "p", batch_size=2, workers=1, timeout="4s", config=f"{{sleep_file: {sleep}}}")
    job_id = _submit(project, [str(write_rows(tmp_path / "in.parquet", range(40)))], tmp_path / "out")
    runner(only={job_id})
    job = jobs.wait(job_id, timeout=60)
    assert job.state == "timed_out" and job.rows_done < 40
    assert "ran longer than its timeout of 4s" in " ".join(event.message for event in jobs.get(job_id).events)
    first_run = job.duration
    sleep.write_text("0")
    time.sleep(1)  # idle time between the end and the retry is not running time
    retried = jobs.retry(job_id, start_runner=False, timeout=120)
    unfinished = 20 - job.batches_done
    assert retried.reason == (
        f"retrying 0 dead-lettered rows (0 new batches), {unfinished} unfinished batches ({unfinished * 2} rows); "
        "its timeout is now 120s"
    )
    with open_store(Settings.from_env()) as engine:
        assert records.get(engine, job_id)["timeout"] == 120, "the runner reads the new timeout from the store"
    runner(only={job_id})
    job = jobs.wait(job_id, timeout=60)
    assert (job.state, job.rows_done) == ("succeeded", 40), "the retry's timeout counts from the retry"
    assert job.prior_seconds == first_run
    assert job.duration is not None and job.ended_at is not None and job.started_at is not None
    assert job.duration < job.ended_at - job.started_at - 0.9, "the idle second before the retry is not counted"
    assert_exactly_once(tmp_path / "out", range(40))


def test_rows_that_kill_their_worker_are_the_only_ones_dead_lettered(tmp_path: Path, runner: Runner) -> None:
    """x=13 ends the worker with os._exit(3), x=15 with sys.exit(0): an exit with code 0 while holding a
    batch is a death like any other (its batch goes back at once, not after its lease expires)."""
    project = make_job_project(
        tmp_path / "p", batch_size=10, workers=1, max_retries=0, config="{exit_on: 13, quit_on: 15}"
    )
    job_id = _submit(project, [str(write_rows(tmp_path / "in.parquet", range(20)))], tmp_path / "out")
    runner(only={job_id}, lease_ttl=60.0)  # a lease left to expire would outlast the test's wait
    job = jobs.wait(job_id, timeout=90)
    assert (job.state, job.rows_done, job.rows_failed) == ("completed_with_failures", 18, 2)
    _, failed = assert_exactly_once(tmp_path / "out", range(20))
    assert [(row["id"], row["_row"]) for row in failed] == [(13, 13), (15, 15)]
    assert all(row["_error"].startswith("not run again: the worker died on this row (worker-") for row in failed)
    assert failed[0]["_error"].endswith(" exited with code 3)")
    assert failed[1]["_error"].endswith(" exited with code 0)")
    events = [event.message for event in jobs.get(job_id).events]
    assert any("it was on row 3 of its batch, which runs once more before it is set aside" in m for m in events)
    assert any("row 3 of its batch is set aside as a dead letter (a worker died on it 2 times)" in m for m in events)
    assert any("exited with code 0 while it held batch 1; row 5 of its batch is set aside" in m for m in events)


def test_a_runner_that_stops_mid_row_gives_the_batch_back_and_blames_no_row(tmp_path: Path, runner: Runner) -> None:
    """`shipyard down` during a row-by-row batch: the worker is killed after the grace, and the row it was
    on is not the worker's fault: the next runner runs it, and only the row that raises is dead-lettered."""
    project = make_job_project(tmp_path / "p", batch_size=5, workers=1, max_retries=0, config="{bad: [3], sleep: 0.4}")
    job_id = _submit(project, [str(write_rows(tmp_path / "in.parquet", range(10)))], tmp_path / "out")
    settings = Settings.from_env()
    options = RunnerOptions(only=frozenset({job_id}), driver=DriverOptions(lease_ttl=3.0, grace=0.5))
    should_exit = threading.Event()
    with open_store(settings) as engine:
        first = threading.Thread(target=JobRunner(engine, settings.home, options).run, args=(should_exit,))
        first.start()
        try:
            _wait_for(
                lambda: any(h.row_cursor is not None for h in queue.holdings(engine, job_id)),
                what="a batch to run row by row",
            )
        finally:
            should_exit.set()
            first.join(60)
        assert queue.holdings(engine, job_id) == [], "the killed worker's batch is back in the queue"
    events = [event.message for event in jobs.get(job_id).events]
    assert any(
        "was killed after the 0.5s grace before it finished batch 0; back to the queue, no failure counted" in event
        for event in events
    ), events
    runner(only={job_id})
    job = jobs.wait(job_id, timeout=90)
    assert (job.state, job.rows_done, job.rows_failed) == ("completed_with_failures", 9, 1)
    _, failed = assert_exactly_once(tmp_path / "out", range(10))
    assert [(row["id"], row["_error"]) for row in failed] == [(3, "ValueError: cannot score x=3")]


def test_a_stopped_worker_is_killed_and_replaced(tmp_path: Path, runner: Runner) -> None:
    marks = tmp_path / "marks"
    project = make_job_project(tmp_path / "p", batch_size=5, workers=1, config=f"{{sleep: 0.3, marks: {marks}}}")
    job_id = _submit(project, [str(write_rows(tmp_path / "in.parquet", range(40)))], tmp_path / "out")
    runner(only={job_id}, lease_ttl=3.0)
    _wait_for(lambda: marks.exists() and any(marks.iterdir()), what="a worker to start a batch")
    victim = int(next(marks.iterdir()).name.split("-")[0])
    os.kill(victim, signal.SIGSTOP)
    try:
        job = jobs.wait(job_id, timeout=90)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
    assert (job.state, job.rows_done) == ("succeeded", 40)
    assert_exactly_once(tmp_path / "out", range(40))
    killed = [event.message for event in jobs.get(job_id).events if "is killed and replaced" in event.message]
    assert len(killed) == 1 and ("lease's expiry" in killed[0] or "heartbeat stopped" in killed[0]), killed


def test_a_batch_that_never_returns_is_cut_off_by_batch_timeout(tmp_path: Path, runner: Runner) -> None:
    project = make_job_project(
        tmp_path / "p", batch_size=5, workers=1, max_retries=0, batch_timeout="2s", config="{loop_on: 7}"
    )
    job_id = _submit(project, [str(write_rows(tmp_path / "in.parquet", range(10)))], tmp_path / "out")
    runner(only={job_id})
    job = jobs.wait(job_id, timeout=90)
    assert (job.state, job.rows_done, job.rows_failed) == ("completed_with_failures", 9, 1)
    _, failed = assert_exactly_once(tmp_path / "out", range(10))
    assert [row["id"] for row in failed] == [7]
    assert "was killed: row 2 of batch 1 ran longer than batch_timeout (2s)" in failed[0]["_error"]


def test_a_handler_that_does_not_load_fails_the_job_with_its_error(tmp_path: Path, runner: Runner) -> None:
    project = make_job_project(tmp_path / "p", handler="handlers.py:Unloadable", workers=2)
    job_id = _submit(project, [str(write_rows(tmp_path / "in.csv", range(5)))], tmp_path / "out")
    runner(only={job_id}).join(60)  # until the runner let go: every worker it started has exited
    job = jobs.get(job_id)
    assert job.state == "failed"
    assert "Unloadable.__init__ raised OSError: weights.bin is missing" in job.reason
    states = [event.state for event in job.events]
    assert states.count("failed") == 1
    after = [event.message for event in job.events[states.index("failed") + 1 :]]
    assert not [message for message in after if "could not load" in message], "no worker started after the end"
    manifest = orjson.loads((tmp_path / "out" / "_manifest.json").read_bytes())
    assert (manifest["complete"], manifest["state"], manifest["rows"]) == (False, "failed", 0)
