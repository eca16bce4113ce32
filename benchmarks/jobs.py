"""Batch jobs against the floor: score one generated Parquet file with the iris example.

(i)   the floor: one process reads the file in chunks and calls the handler's predict_batch, nothing else;
(ii)  a Shipyard job with 2 workers (runner process + 2 worker processes, SQLite store, Parquet parts);
(iii) the same job, with the runner SIGKILLed part-way and started again (crash and resume).

All in one run, so the ratios compare like with like on a noisy machine. Peak memory is each process's
maximum resident set (the runner's from wait4, the workers' from their own exit line in the job log).

    python benchmarks/jobs.py [--rows 2000000] [--batch-size 10000] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "iris-batch"))
from make_data import FEATURES, measurements  # noqa: E402

SPEC = """\
- name: iris-batch
  kind: BatchAPI
  handler: sklearn
  model: model/
  schema:
    fields:
      sepal_length: {type: float}
      sepal_width: {type: float}
      petal_length: {type: float}
      petal_width: {type: float}
  batch_size: %d
  workers: %d
"""


def make_input(path: Path, rows: int) -> None:
    writer = None
    for start in range(0, rows, 500_000):
        table = measurements(min(500_000, rows - start), seed=start, first_id=start)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=100_000)
    assert writer is not None
    writer.close()


def args_rows(data: Path) -> int:
    return int(pq.ParquetFile(data).metadata.num_rows)


def _peak_mb(pid: int) -> int:
    """The process's own peak resident memory so far (VmHWM), in MB; 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(found.group(1)) // 1024 if found else 0


def floor(project: Path, data: Path, batch_size: int) -> float:
    """Rows per second of a plain loop: read a chunk, predict_batch, next."""
    from shipyard.serving.builtin.sklearn import SklearnHandler

    handler = SklearnHandler({}, str(project / "model"), feature_names=list(FEATURES))
    started = time.perf_counter()
    rows = 0
    for batch in pq.ParquetFile(data).iter_batches(batch_size=batch_size):
        results = handler.predict_batch(batch.to_pylist())
        rows += len(results)
    return rows / (time.perf_counter() - started)


def run_job(project: Path, data: Path, output: Path, env: dict[str, str], kill_at: float | None) -> dict[str, float]:
    """Submit, run the runner as a process (SIGKILL it once `kill_at` of the rows are done, then restart)."""
    from shipyard import jobs

    os.environ.update(env)
    started = time.perf_counter()
    job = jobs.submit(jobs.JobRequest("iris-batch", [str(data)], str(output), str(project)), start_runner=False)
    command = [sys.executable, "-m", "shipyard", "jobs", "run-scheduler", "--until-idle"]
    runner = subprocess.Popen(command, env={**os.environ}, stderr=subprocess.DEVNULL)
    peaks = [0]
    if kill_at is not None:
        while (done := jobs.get(job.id, with_events=False)).rows_done < kill_at * (done.rows_total or args_rows(data)):
            peaks.append(_peak_mb(runner.pid))
            time.sleep(0.05)
        runner.send_signal(signal.SIGKILL)
        runner.wait()
        runner = subprocess.Popen(command, env={**os.environ}, stderr=subprocess.DEVNULL)
    while runner.poll() is None:
        peaks.append(_peak_mb(runner.pid))
        time.sleep(0.1)
    elapsed = time.perf_counter() - started
    final = jobs.get(job.id)
    assert final.state == "succeeded", (final.state, final.reason)
    log = (Path(env["SHIPYARD_HOME"]) / "jobs" / job.id / "job.log").read_text()
    workers = [int(mb) for mb in re.findall(r"peak memory (\d+) MB", log)]
    return {
        "rows": final.rows_done,
        "seconds": round(elapsed, 2),
        "rows_per_s": round(final.rows_done / elapsed),
        "runner_peak_mb": round(max(peaks)),
        "worker_peak_mb": max(workers),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="shipyard-bench-jobs-"))
    try:
        project = work / "project"
        project.mkdir()
        (project / "shipyard.yaml").write_text(SPEC % (args.batch_size, args.workers))
        shutil.copytree(ROOT / "examples" / "iris" / "model", project / "model")
        data = work / "input.parquet"
        make_input(data, args.rows)
        floor_rate = floor(project, data, args.batch_size)
        undisturbed = run_job(project, data, work / "out-1", {"SHIPYARD_HOME": str(work / "home-1")}, None)
        crashed = run_job(project, data, work / "out-2", {"SHIPYARD_HOME": str(work / "home-2")}, 0.4)
        result = {
            "rows": args.rows,
            "batch_size": args.batch_size,
            "workers": args.workers,
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg()[0],
            "floor_rows_per_s": round(floor_rate),
            "job": undisturbed,
            "job_vs_floor": round(undisturbed["rows_per_s"] / floor_rate, 2),
            "crash_and_resume": crashed,
            "crash_overhead": round(crashed["seconds"] / undisturbed["seconds"] - 1, 3),
        }
        print(json.dumps(result, indent=2))
        out = ROOT / "benchmarks" / "results" / "jobs.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
