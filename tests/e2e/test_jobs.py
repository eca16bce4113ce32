"""Batch jobs run by the daemon's job runner: submitted through the control API, surviving a SIGKILL."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from shipyard import jobs
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
