"""A worker process on its own: it exits, leasing nothing, when the runner that started it is gone."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from shipyard import jobs
from shipyard.jobs import JobRequest
from tests.jobs.conftest import make_job_project, write_rows


def _gone(pid: int) -> bool:
    """Not running: no such process, or a zombie nobody reaped yet (it is not our child)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_worker_whose_runner_died_while_it_started_exits(tmp_path: Path) -> None:
    """The runner starts the worker and dies at once, before the worker has even imported Shipyard."""
    project = make_job_project(tmp_path / "p")
    request = JobRequest(
        "double", [str(write_rows(tmp_path / "in.csv", range(5)))], str(tmp_path / "out"), str(project)
    )
    job = jobs.submit(request, start_runner=False)  # pending: a worker of it would otherwise wait for batches
    log = tmp_path / "worker.log"
    runner = textwrap.dedent(f"""
        import os, subprocess, sys
        with open({str(log)!r}, "ab") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "shipyard.jobs.worker", "--job", {job.id!r}, "--name", "w1",
                 "--runner-pid", str(os.getpid()), "--lease-ttl", "0.6"], stdout=out, stderr=out)
        print(worker.pid)
    """)
    pid = int(subprocess.run([sys.executable, "-c", runner], capture_output=True, text=True, check=True).stdout)
    deadline = time.monotonic() + 30
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(pid), "the orphaned worker is still running"
    assert "the runner (pid " in log.read_text() and "is gone; exiting before any batch" in log.read_text()
    assert jobs.get(job.id).state == "pending", "it touched nothing"
