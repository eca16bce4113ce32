"""`shipyard jobs`: a job from the command line, and bad input as one line with no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.jobs.conftest import assert_exactly_once, make_job_project


def _shipyard(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shipyard", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_submit_wait_then_get_as_json(tmp_path: Path) -> None:
    project = make_job_project(tmp_path / "p", batch_size=2)
    items = tmp_path / "items.json"
    items.write_text(json.dumps([{"id": i, "x": i} for i in range(5)]))
    done = _shipyard(
        "jobs",
        "submit",
        "double",
        "--items",
        f"@{items}",
        "--output",
        "out",
        "--format",
        "jsonl",
        "--wait",
        "--json",
        cwd=project,
    )
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert (job["state"], job["rows_done"], job["batches"]) == ("succeeded", 5, 3)
    assert_exactly_once(project / "out", range(5))
    shown = _shipyard("jobs", "get", job["id"], "-o", "json", cwd=project)
    events = json.loads(shown.stdout)["events"]
    assert [e["state"] for e in events if e["state"]] == ["pending", "enqueuing", "running", "succeeded"]
    assert events[-1]["message"] == "on_job_complete ran"


def test_bad_input_is_one_line_naming_the_file_and_nothing_is_queued(tmp_path: Path) -> None:
    project = make_job_project(tmp_path / "p")
    (project / "rows.csv").write_text("id,y\n1,2\n")
    spec = (project / "shipyard.yaml").read_text() + "  schema: {fields: {x: {type: int}}}\n"
    (project / "shipyard.yaml").write_text(spec)
    missing = _shipyard("jobs", "submit", "double", "--input", "rows.csv", "--output", "out", cwd=project)
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        f"error: input '{project / 'rows.csv'}': lacks the column(s) x that the API's schema requires "
        "(it has: id, y); add the columns, or mark them required: false in the schema"
    ]
    glob = _shipyard("jobs", "submit", "double", "--input", "nothing/*.parquet", "--output", "out", cwd=project)
    assert glob.returncode == 1 and "Traceback" not in glob.stderr
    assert "the glob matches no file" in glob.stderr
    listed = _shipyard("jobs", "list", "-o", "json", cwd=project)
    assert json.loads(listed.stdout) == []
