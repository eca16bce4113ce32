"""Submitting: what is checked before a job is queued, and that a refused submit leaves nothing behind."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pyarrow as pa
import pytest
from sqlalchemy import text, update

from shipyard import jobs
from shipyard.jobs import JobRequest, codec, queue, records
from shipyard.jobs.errors import BadInput, BadJobOption, BadOutput, JobConflict, JobNotFound, StoreFailed
from shipyard.jobs.output import OutputFolder, encode
from shipyard.jobs.queue import Outcome, Part
from shipyard.jobs.service import open_store as jobs_store
from shipyard.settings import Settings
from shipyard.store import create_store_engine, migrate, write_transaction
from shipyard.store.tables import job_batches
from tests.jobs.conftest import make_job_project, write_rows

LONGEST_API = "a" + "b" * 62


def test_an_api_name_of_63_characters_makes_a_job_id_the_store_keeps(database_url: str, tmp_path: Path) -> None:
    project = make_job_project(tmp_path / "p", name=LONGEST_API)
    source = write_rows(tmp_path / "in.csv", range(3))
    request = JobRequest(LONGEST_API, [str(source)], str(tmp_path / "out"), str(project))
    job = jobs.submit(request, start_runner=False)
    assert job.id.startswith(f"{LONGEST_API}-") and len(job.id) == 84
    assert (jobs.get(job.id).state, jobs.list_jobs()[0].id) == ("pending", job.id)


def test_a_store_that_refuses_the_job_is_one_line_and_leaves_no_folder(tmp_path: Path) -> None:
    engine = create_store_engine(Settings.from_env().database_url)
    migrate(engine)
    with engine.begin() as connection:  # the database itself refuses, as a full disk or a policy would
        connection.execute(
            text("CREATE TRIGGER refuse BEFORE INSERT ON jobs BEGIN SELECT RAISE(ABORT, 'no room'); END")
        )
    engine.dispose()
    project = make_job_project(tmp_path / "p")
    output = tmp_path / "out"
    items = [{"id": 1, "x": 1}]
    with pytest.raises(StoreFailed) as caught:
        jobs.submit(JobRequest("double", [], str(output), str(project), items=items), start_runner=False)
    assert "\n" not in caught.value.message
    assert caught.value.message.startswith("the store could not record job 'double-")
    assert ": no room; check SHIPYARD_DATABASE_URL" in caught.value.message
    assert not output.exists(), "the output folder this submit created is removed again"
    assert not list((Settings.from_env().home / "jobs").glob("double-*")), "nor is the copy of --items kept"


def test_an_id_column_missing_from_items_is_named_in_their_terms(tmp_path: Path) -> None:
    project = make_job_project(tmp_path / "p")
    items = [{"id": 1, "x": 1}, {"id": 2, "x": 2, "note": "kept"}]
    request = JobRequest("double", [], str(tmp_path / "out"), str(project), items=items, id_column="nope")
    with pytest.raises(BadInput) as caught:
        jobs.submit(request, start_runner=False)
    assert caught.value.message == (
        "input '--items': records have no field 'nope' for --id-column (they have: id, x, note); "
        "pass one of their fields to --id-column, or leave the option out"
    )


def test_items_whose_declared_field_is_of_another_type_are_named_as_records(tmp_path: Path) -> None:
    project = make_job_project(tmp_path / "p", schema="{fields: {x: {type: float}}}")
    items = [{"id": 1, "x": "abc"}, {"id": 2, "x": "def"}]
    with pytest.raises(BadInput) as caught:
        jobs.submit(JobRequest("double", [], str(tmp_path / "out"), str(project), items=items), start_runner=False)
    assert caught.value.message == (
        "input '--items': no record's field 'x' among the first 2 is a float as the API's schema declares "
        "(record 0 has 'abc'); fix the records, or change the field's type in the API's schema"
    )
    assert jobs.list_jobs() == [] and not (tmp_path / "out").exists()
    items[1]["x"] = 2.5  # one bad record among good ones: a dead letter when the job runs, not a refusal
    jobs.submit(JobRequest("double", [], str(tmp_path / "out"), str(project), items=items), start_runner=False)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"batch_size": 0}, "job option batch_size (--batch-size) is 0: Input should be greater than or equal to 1"),
        ({"workers": -1}, "job option workers (--workers) is -1: Input should be greater than or equal to 1"),
        ({"timeout": -5}, "job option timeout (--timeout) is -5: must be a duration >= 0, got -5"),
        ({"timeout": 0}, "job option timeout (--timeout) is 0: Input should be greater than 0"),
        ({"max_retries": 101}, "job option max_retries (--max-retries) is 101: Input should be less than or equal to"),
    ],
)
def test_option_values_the_spec_refuses_are_one_line_from_the_sdk(
    tmp_path: Path, option: dict[str, int], message: str
) -> None:
    project = make_job_project(tmp_path / "p")
    request = JobRequest("double", [], str(tmp_path / "out"), str(project), items=[{"id": 1}], **option)  # type: ignore[arg-type]
    with pytest.raises(BadJobOption) as caught:
        jobs.submit(request, start_runner=False)
    assert caught.value.message.startswith(message) and "\n" not in caught.value.message, caught.value.message
    assert jobs.list_jobs() == []


def test_a_request_of_the_wrong_types_is_refused_when_it_is_made() -> None:
    with pytest.raises(BadJobOption, match=r"^job option inputs is str '/data'; it must be a list of paths"):
        JobRequest("double", "/data")  # type: ignore[arg-type]
    with pytest.raises(BadJobOption, match=r"^job option batch_size \(--batch-size\) is str 'abc'; it must be"):
        JobRequest("double", ["/data"], batch_size="abc")  # type: ignore[arg-type]


def test_memory_filesystems_are_refused_at_submit(tmp_path: Path) -> None:
    project = make_job_project(tmp_path / "p")
    source = write_rows(tmp_path / "in.csv", range(3))
    with pytest.raises(BadOutput, match=r"^output 'memory://scored': lives in one process's memory"):
        jobs.submit(JobRequest("double", [str(source)], "memory://scored", str(project)), start_runner=False)
    assert jobs.list_jobs() == []


def test_delete_forgets_an_ended_job_and_keeps_its_output(tmp_path: Path) -> None:
    project = make_job_project(tmp_path / "p")
    items = [{"id": 1, "x": 1}]
    job = jobs.submit(JobRequest("double", [], str(tmp_path / "out"), str(project), items=items), start_runner=False)
    with pytest.raises(JobConflict, match=r"is pending; only a job that ended can be deleted: `shipyard jobs stop"):
        jobs.delete(job.id)
    jobs.stop(job.id, start_runner=False)  # no runner holds it: it stops at once
    with pytest.raises(JobConflict, match=r"ended but its on_job_complete hook has not run yet; try again shortly"):
        jobs.delete(job.id)
    jobs.run_scheduler(burst=True)  # as the runner that `jobs stop` starts: it runs the hook, then exits
    home = Settings.from_env().home
    assert (home / "jobs" / job.id).is_dir()
    jobs.delete(job.id)
    with pytest.raises(JobNotFound):
        jobs.get(job.id)
    assert not (home / "jobs" / job.id).exists() and (tmp_path / "out").is_dir()


def _write_part(folder: OutputFolder, seq: int, ids: list[int]) -> Part:
    data = encode(pa.table({"id": ids}), "parquet")
    return folder.write(f"part-{seq:06d}-1.parquet", data, len(ids))


def test_stop_with_no_runner_ends_the_job_as_its_runner_would(database_url: str, tmp_path: Path) -> None:
    """A runner died mid-job: `jobs stop` releases what its dead workers held, keeps the parts, cleans the
    rest, writes a partial manifest, and leaves the on_job_complete hook to the next runner."""
    project = make_job_project(tmp_path / "p", batch_size=2)
    source = write_rows(tmp_path / "in.parquet", range(6))
    job = jobs.submit(JobRequest("double", [str(source)], str(tmp_path / "out"), str(project)), start_runner=False)
    folder = OutputFolder(str(tmp_path / "out"))
    with jobs_store() as engine:
        with write_transaction(engine) as connection:
            for seq in range(3):
                table = pa.table({"id": [seq * 2, seq * 2 + 1]})
                queue.enqueue(connection, job.id, seq, 0, seq * 2, 2, codec.encode(table))
        done = queue.lease(engine, job.id, "worker-a", ttl=30, max_retries=2)
        assert done is not None
        assert queue.complete(engine, done, Outcome(2, 0, _write_part(folder, 0, [0, 1])))
        held = queue.lease(engine, job.id, "worker-b", ttl=30, max_retries=2)
        assert held is not None
        (tmp_path / "out" / "part-000001-1.parquet").write_bytes(b"half written by worker-b")
        with pytest.raises(JobConflict) as refused:
            jobs.stop(job.id, start_runner=False)
        assert re.fullmatch(
            rf"job '{job.id}' has no runner, but worker-b still holds batch 1 for up to (29|30)s \(it finishes the "
            rf"batch in hand, then exits\); run `shipyard jobs stop {job.id}` again in (29|30)s",
            refused.value.message,
        ), refused.value.message
        assert jobs.get(job.id).state == "pending" and not (tmp_path / "out" / "_manifest.json").exists()
        with write_transaction(engine) as connection:  # time passes: worker-b died, its lease ran out
            connection.execute(
                update(job_batches).values(lease_expires_at=time.time() - 1).where(job_batches.c.seq == 1)
            )
        stopped = jobs.stop(job.id, start_runner=False)
        assert queue.holdings(engine, job.id) == [], "the dead worker's batch is back in the queue"
        assert queue.read_progress(engine, job.id).batches_done == 1
    assert (stopped.state, stopped.reason) == (
        "stopped",
        "stopped by `jobs stop` (no runner held it) with 1 of the 3 batches split so far done "
        "(the rest of the input was not split yet); parts are kept",
    )
    manifest = folder.read_manifest()
    assert manifest is not None
    assert (manifest["complete"], manifest["state"], manifest["rows"]) == (False, "stopped", 2)
    assert [part["path"] for part in manifest["parts"]] == ["part-000000-1.parquet"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["_manifest.json", "part-000000-1.parquet"]
    assert records_hook_state(job.id) == "pending", "the next runner runs on_job_complete"
    jobs.run_scheduler(burst=True)
    assert records_hook_state(job.id) == "done"


def records_hook_state(job_id: str) -> str | None:
    with jobs_store() as engine:
        return records.get(engine, job_id)["hook_state"]  # type: ignore[no-any-return]
