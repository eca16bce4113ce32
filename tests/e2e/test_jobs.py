"""Batch jobs run by the daemon's job runner: submitted through the control API, surviving a SIGKILL."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from shipyard import jobs
from shipyard.errors import ConfigError
from shipyard.jobs import JobRequest
from shipyard.jobs.errors import BadInput, BadJobOption, JobNotFound
from shipyard.jobs.service import ensure_runner
from shipyard.settings import Settings
from tests.e2e.conftest import Daemon, shipyard
from tests.jobs.conftest import assert_exactly_once, make_job_project, write_rows


def test_a_job_in_the_daemon_resumes_after_the_daemon_is_killed(daemon: Daemon, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    project = make_job_project(tmp_path / "p", batch_size=10, workers=2, config=f"{{sleep: 0.2, marks: {marks}}}")
    rows = write_rows(tmp_path / "in.csv", range(300))
    submitted = shipyard(
        "jobs", "submit", "double", "--input", str(rows), "--output", str(tmp_path / "out"), "--project", str(project)
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    ensure_runner(Settings.from_env())  # the daemon runs jobs: no standalone runner may start beside it
    assert not (daemon.home.root / "jobs" / "runner.log").exists()

    daemon.wait_for(lambda: marks.exists() and len(list(marks.iterdir())) >= 4, what="batches to run")
    os.kill(daemon.pid(), signal.SIGKILL)
    daemon.wait_for(lambda: not daemon.home.is_locked(), what="the killed daemon to let go of its lock")
    before = jobs.get(job_id)  # no daemon now: read from the store
    assert not before.is_finished and before.rows_done < 300
    daemon.up()

    job = jobs.wait(job_id, timeout=90)
    assert (job.state, job.rows_done) == ("succeeded", 300)
    assert_exactly_once(tmp_path / "out", range(300))
    events = [event.message for event in jobs.get(job_id).events]
    assert any("which stopped" in message for message in events), events

    listed = shipyard("jobs", "list", "-o", "json")
    assert [found["id"] for found in json.loads(listed.stdout)] == [job_id]
    assert shipyard("jobs", "logs", job_id).returncode == 0
    again = shipyard("jobs", "retry", job_id)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        f"error: job {job_id!r} is succeeded; retry applies to jobs that are "
        "completed_with_failures, stopped, timed_out, failed"
    ]


def test_errors_through_the_daemon_are_the_same_as_without_it(daemon: Daemon, tmp_path: Path) -> None:
    """Same exception class in the SDK, same line and exit code in the CLI, daemon or not."""
    project = make_job_project(tmp_path / "p")
    (project / "shipyard.yaml").write_text(
        (project / "shipyard.yaml").read_text() + "  schema: {fields: {x: {type: int}}}\n"
    )
    (project / "rows.csv").write_text("id,y\n1,2\n")
    command = ("jobs", "submit", "double", "--input", str(project / "rows.csv"), "--output", str(tmp_path / "out"))
    expected = [
        f"error: input '{project / 'rows.csv'}': lacks the column(s) x that the API's schema requires "
        "(it has: id, y); add the columns, or mark them required: false in the schema"
    ]
    through = shipyard(*command, "--project", str(project))
    assert (through.returncode, through.stderr.strip().splitlines()) == (1, expected)
    with pytest.raises(JobNotFound, match=r"job 'ghost' not found"):
        jobs.get("ghost")
    with pytest.raises(BadInput, match=r"lacks the column\(s\) x"):
        jobs.submit(JobRequest("double", [str(project / "rows.csv")], str(tmp_path / "out"), str(project)))
    body = {"api": "double", "project": str(project), "inputs": [str(project / "rows.csv")], "output": "/tmp/o"}
    for change, error, start in [
        ({"batch_size": "abc"}, BadJobOption, "job option batch_size (--batch-size) is str 'abc'"),
        ({"config": [1]}, BadJobOption, "job option config (--config) is list [1]"),
        ({"inputs": str(project / "rows.csv")}, BadJobOption, "job option inputs is str"),
        ({"output": "relative/out"}, ConfigError, "'output' holds the relative path 'relative/out'"),  # a usage error
    ]:
        with pytest.raises(error) as caught:  # the raw control API: a 400 naming the field, not a 500 or a hang-up
            daemon.client._call("POST", "/v1/jobs", json=body | change)
        assert caught.value.message.startswith(start) and "\n" not in caught.value.message, caught.value.message
    assert shipyard("down", "--timeout", "20").returncode == 0
    daemon.wait_for(lambda: not daemon.home.is_locked(), what="the daemon to stop")
    direct = shipyard(*command, "--project", str(project))
    assert (direct.returncode, direct.stderr.strip().splitlines()) == (1, expected)
