"""Factories for job tests: projects with test handlers, input files, and runners that always stop."""

from __future__ import annotations

import shutil
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from shipyard import jobs
from shipyard.jobs.output import OutputFolder

HANDLERS = Path(__file__).with_name("handlers.py")


def make_job_project(root: Path, handler: str = "handlers.py:Doubler", name: str = "double", **spec: Any) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    extra = "".join(f"  {key}: {value}\n" for key, value in spec.items())
    (root / "shipyard.yaml").write_text(
        textwrap.dedent(f"""\
            - name: {name}
              kind: BatchAPI
              handler: {handler}
            """)
        + extra
    )
    shutil.copy(HANDLERS, root / "handlers.py")
    return root


def write_rows(path: Path, ids: range) -> Path:
    """Rows {id, x} in the format the suffix names; x equals id."""
    table = pa.table({"id": pa.array(list(ids), pa.int64()), "x": pa.array(list(ids), pa.int64())})
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        pq.write_table(table, path, row_group_size=7)
    elif path.suffix == ".csv":
        pa_csv.write_csv(table, path)
    else:
        path.write_text("".join(f'{{"id": {i}, "x": {i}}}\n' for i in ids))
    return path


def read_output(destination: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every output row and every dead letter the manifest lists (the manifest must exist)."""
    import orjson

    folder = OutputFolder(str(destination))
    manifest = folder.read_manifest()
    assert manifest is not None, f"no _manifest.json in {destination}"
    assert manifest["complete"] is True, f"the manifest in {destination} is marked partial"
    rows: list[dict[str, Any]] = []
    for part in manifest["parts"]:
        path = destination / part["path"]
        if path.suffix == ".parquet":
            rows += pq.read_table(path).to_pylist()
        elif path.suffix == ".csv":
            rows += pa_csv.read_csv(path).to_pylist()
        else:
            rows += [orjson.loads(line) for line in path.read_bytes().splitlines()]
    failed = [
        orjson.loads(line)
        for part in manifest["failed"]
        for line in (destination / part["path"]).read_bytes().splitlines()
    ]
    return rows, failed


def assert_exactly_once(destination: Path, ids: range) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows, failed = read_output(destination)
    seen = sorted([row["id"] for row in rows] + [row["id"] for row in failed])
    assert seen == list(ids), f"{len(seen)} rows seen for {len(ids)} input rows"
    return rows, failed


@pytest.fixture
def runner() -> Iterator[Callable[..., threading.Thread]]:
    """Start an in-process job runner in a thread; every runner is drained when the test ends."""
    started: list[tuple[threading.Thread, threading.Event]] = []

    def start(burst: bool = True, only: set[str] | None = None, lease_ttl: float = 3.0) -> threading.Thread:
        should_exit = threading.Event()
        thread = threading.Thread(
            target=jobs.run_scheduler,
            kwargs={"burst": burst, "only": only, "should_exit": should_exit, "lease_ttl": lease_ttl},
            daemon=True,
        )
        thread.start()
        started.append((thread, should_exit))
        return thread

    yield start
    for thread, should_exit in started:
        should_exit.set()
        thread.join(60)
