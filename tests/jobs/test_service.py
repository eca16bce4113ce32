"""Submitting: what is checked before a job is queued, and that a refused submit leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from shipyard import jobs
from shipyard.jobs import JobRequest
from shipyard.jobs.errors import BadInput, BadOutput, JobConflict, JobNotFound, StoreFailed
from shipyard.settings import Settings
from shipyard.store import create_store_engine, migrate
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
    jobs.stop(job.id)  # no runner holds it: it stops at once
    home = Settings.from_env().home
    assert (home / "jobs" / job.id).is_dir()
    jobs.delete(job.id)
    with pytest.raises(JobNotFound):
        jobs.get(job.id)
    assert not (home / "jobs" / job.id).exists() and (tmp_path / "out").is_dir()
