"""The end of a job's output: parts of differing schemas get one, the leftovers go, the manifest says how complete."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine

from shipyard.jobs import codec, queue, records
from shipyard.jobs.finalize import finalize
from shipyard.jobs.output import OutputFolder, encode, part_name, prepare
from shipyard.jobs.queue import Outcome
from shipyard.jobs.states import JobState
from shipyard.store import create_store_engine, migrate, write_transaction

JOB = "job-1"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_store_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


def _job(engine: Engine, output: Path, fmt: str) -> dict[str, object]:
    values = {
        "id": JOB,
        "api": "double",
        "project": "/p",
        "spec": {},
        "inputs": [],
        "output": str(output),
        "format": fmt,
        "batch_size": 2,
        "workers": 1,
        "max_retries": 0,
    }
    with write_transaction(engine) as connection:
        records.insert_job(connection, values)
    return records.get(engine, JOB)


def _run_batch(engine: Engine, folder: OutputFolder, seq: int, table: pa.Table, fmt: str) -> None:
    """What a worker does with a batch that scored `table`: write its part, record it with its schema."""
    with write_transaction(engine) as connection:
        queue.enqueue(connection, JOB, seq, 0, seq * 2, table.num_rows, codec.encode(table))
    held = queue.lease(engine, JOB, "w", ttl=30, max_retries=0)
    assert held is not None and held.seq == seq
    rows = prepare(table, fmt)  # type: ignore[arg-type]
    part = folder.write(part_name(seq, 1, fmt), encode(rows, fmt), rows.num_rows)  # type: ignore[arg-type]
    assert queue.complete(
        engine, held, Outcome(rows.num_rows, 0, part, part_schema=rows.schema.serialize().to_pybytes())
    )


def _csv_options(schema: pa.Schema) -> pa_csv.ConvertOptions:
    """How to read CSV parts back exactly: the manifest's types; an unquoted empty field is null, "" is ""."""
    return pa_csv.ConvertOptions(column_types=schema, strings_can_be_null=True, quoted_strings_can_be_null=False)


def _notes() -> tuple[list[str], object]:
    found: list[str] = []
    return found, found.append


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_parts_of_differing_types_are_rewritten_to_one_schema(engine: Engine, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "out"
    job = _job(engine, out, fmt)
    folder = OutputFolder(str(out))
    a = pa.table({"id": [0, 1], "x": [1, 2], "tag": pa.nulls(2), "double": [2, 4]})
    b = pa.table({"id": [2, 3], "x": [3.5, 4.0], "tag": ["t", None], "double": [7.0, 8.0], "extra": [True, False]})
    _run_batch(engine, folder, 0, a, fmt)
    _run_batch(engine, folder, 1, b, fmt)
    stray = out / part_name(9, 4, fmt)  # a worker that lost its lease left this
    stray.write_bytes(b"leftover")
    notes, note = _notes()
    output, _ = finalize(engine, job, JobState.succeeded, True, note)  # type: ignore[arg-type]
    assert notes == []
    manifest = orjson.loads((out / "_manifest.json").read_bytes())
    assert (manifest["complete"], manifest["state"], manifest["rows"]) == (True, "succeeded", 4)
    assert manifest["schema"] == [
        {"name": "id", "type": "int64"},
        {"name": "x", "type": "double"},
        {"name": "tag", "type": "string"},
        {"name": "double", "type": "double"},
        {"name": "extra", "type": "bool"},
    ]
    assert manifest["parts"][1]["path"] == part_name(1, 1, fmt), "a part already of the job's schema stays"
    assert manifest["parts"][0]["path"].startswith("part-000000-1-s"), "the other is rewritten"
    assert sorted(p.name for p in out.glob("part-*")) == sorted(part["path"] for part in manifest["parts"])
    schema = pa.schema([(f["name"], pa.type_for_alias(f["type"])) for f in manifest["schema"]])
    if fmt == "parquet":
        whole = pq.read_table(out)  # the whole folder reads as one table
    elif fmt == "csv":
        whole = ds.dataset(out, format=ds.CsvFileFormat(convert_options=_csv_options(schema)), schema=schema).to_table()
    else:
        whole = ds.dataset(out, format="json", schema=schema).to_table()
    assert whole.sort_by("id").column("x").to_pylist() == [1.0, 2.0, 3.5, 4.0]
    assert whole.sort_by("id").column("tag").to_pylist() == [None, None, "t", None]
    again, _ = finalize(engine, records.get(engine, JOB), JobState.succeeded, True, note)  # type: ignore[arg-type]
    assert again == output, "finalizing twice changes nothing"


def test_a_stopped_job_gets_a_manifest_marked_partial(engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "out"
    job = _job(engine, out, "parquet")
    _run_batch(engine, OutputFolder(str(out)), 0, pa.table({"id": [0, 1]}), "parquet")
    with write_transaction(engine) as connection:  # a batch that never ran
        queue.enqueue(connection, JOB, 1, 0, 2, 2, codec.encode(pa.table({"id": [2, 3]})))
    finalize(engine, job, JobState.stopped, False, lambda _: None)
    manifest = orjson.loads((out / "_manifest.json").read_bytes())
    assert (manifest["complete"], manifest["state"], manifest["rows"]) == (False, "stopped", 2)
    assert [part["path"] for part in manifest["parts"]] == ["part-000000-1.parquet"]
