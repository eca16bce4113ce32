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


def test_list_never_cuts_ids_and_get_says_when_no_runner_holds_the_job(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from shipyard import jobs
    from shipyard.cli.main import cli
    from tests.jobs.conftest import write_rows

    api = "a" + "b" * 62
    project = make_job_project(tmp_path / "p", name=api)
    source = write_rows(tmp_path / "in.csv", range(3))
    job = jobs.submit(jobs.JobRequest(api, [str(source)], str(tmp_path / "out"), str(project)), start_runner=False)
    listed = CliRunner().invoke(cli, ["jobs", "list"], terminal_width=80)
    assert listed.exit_code == 0, listed.output
    header, line = listed.output.splitlines()
    assert header.split() == ["JOB", "API", "STATE", "ROWS", "FAILED", "STARTED", "DURATION"]
    assert line.split()[:2] == [job.id, api], "the whole id, however narrow the terminal"
    assert "pending (no runner)" in line
    shown = CliRunner().invoke(cli, ["jobs", "get", job.id])
    assert "pending (no runner holds this job: start one with `shipyard up` or `shipyard jobs run-scheduler`)" in (
        " ".join(shown.output.split())
    )
    assert json.loads(CliRunner().invoke(cli, ["jobs", "get", job.id, "-o", "json"]).output)["runner_active"] is False


def test_get_watch_as_json_prints_json_lines_and_the_errors(tmp_path: Path) -> None:
    import threading

    from click.testing import CliRunner

    from shipyard import jobs
    from shipyard.cli.main import cli
    from tests.jobs.conftest import write_rows

    project = make_job_project(tmp_path / "p", batch_size=5, max_retries=0, config="{bad: [3], sleep: 0.2}")
    source = write_rows(tmp_path / "in.parquet", range(20))
    job = jobs.submit(jobs.JobRequest("double", [str(source)], str(tmp_path / "out"), str(project)), start_runner=False)
    runner = threading.Thread(target=jobs.run_scheduler, kwargs={"burst": True, "only": {job.id}}, daemon=True)
    runner.start()
    watched = CliRunner().invoke(cli, ["jobs", "get", job.id, "-w", "-o", "json"])
    runner.join(60)
    assert watched.exit_code == 0, watched.output
    lines = watched.output.splitlines()
    states = [json.loads(line)["state"] for line in lines]  # every line is one JSON object, nothing else
    assert states[-1] == "completed_with_failures" and len(states) >= 2 and "\x1b" not in watched.output
    assert json.loads(lines[-1])["errors"] == [
        {"error": "ValueError: cannot score x=3", "count": 1, "of": "rows dead-lettered"},
        {"error": "ValueError: cannot score x=3", "count": 1, "of": "batch attempts failed"},
    ]
    table = CliRunner().invoke(cli, ["jobs", "get", job.id]).output
    assert "1 row dead-lettered: ValueError: cannot score x=3" in table
    assert "1 batch attempt failed: ValueError: cannot score x=3" in table


def test_log_lines_print_above_the_progress_bar_not_through_it() -> None:
    import io
    import logging

    from rich.console import Console

    from shipyard.cli.jobs import logs_above

    before, screen = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    plain = logging.StreamHandler(before)
    root.addHandler(plain)
    try:
        with logs_above(Console(file=screen, width=120)):
            logging.getLogger("shipyard.jobs.runner").warning("job x is slow")
        logging.getLogger("shipyard.jobs.runner").warning("after the bar")
    finally:
        root.removeHandler(plain)
    assert "shipyard.jobs.runner: job x is slow" in screen.getvalue()
    assert before.getvalue() == "after the bar\n", "the stream handler is set aside, then back"


def test_option_values_out_of_range_are_one_line_with_no_traceback(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from shipyard import jobs
    from shipyard.cli.main import cli

    project = make_job_project(tmp_path / "p")
    submit = ["jobs", "submit", "double", "--items", '[{"id": 1, "x": 1}]', "--output", str(tmp_path / "out")]
    refused = CliRunner().invoke(cli, [*submit, "--timeout", "0s", "--project", str(project)])
    assert (refused.exit_code, refused.output.strip().splitlines()) == (
        1,
        ["error: job option timeout (--timeout) is 0.0: Input should be greater than 0"],
    )
    request = jobs.JobRequest("double", [], str(tmp_path / "out"), str(project), items=[{"id": 1, "x": 1}])
    job = jobs.submit(request, start_runner=False)
    jobs.stop(job.id, start_runner=False)
    retried = CliRunner().invoke(cli, ["jobs", "retry", job.id, "--timeout", "0s"])
    assert (retried.exit_code, retried.output.strip().splitlines()) == (
        1,
        [
            "error: job option timeout (--timeout) is 0.0: "
            "it should be a number of seconds greater than 0 (30m, 2h, ...)"
        ],
    )
