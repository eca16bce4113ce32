"""The end of a job's output folder: one schema for every part, leftovers removed, the manifest last.

Parts are written while rows stream in, so their columns may differ: a column widened part-way through
a file, a result key some batches lack, a column of nulls in one part and of text in another. Once no
worker writes any more, the parts' recorded schemas are unified (`schemas.unify`) and each part whose
schema differs is rewritten to it under a new name, the store is pointed at the new file, and `clean()`
removes the old one. Rerunning after a crash at any point converges on the same folder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
from sqlalchemy import Engine

from shipyard.jobs import queue
from shipyard.jobs.output import OutputFolder, decode, encode, manifest, retyped_name
from shipyard.jobs.queue import Part
from shipyard.jobs.schemas import conform, unify
from shipyard.jobs.states import JobState
from shipyard.store import read_transaction, write_transaction

Note = Callable[[str], None]


def finalize(
    engine: Engine, job: dict[str, Any], state: JobState, complete: bool, note: Note
) -> tuple[list[Part], list[Part]]:
    """Give the parts one schema, remove what the store does not list, write the manifest; (parts, dead letters)."""
    folder = OutputFolder(job["output"])
    schema = unify_parts(engine, folder, job, note)
    with read_transaction(engine) as connection:
        output, failed = queue.parts(connection, job["id"])
    folder.clean({part.path for part in output + failed})
    folder.write_manifest(manifest({**job, "state": state.value}, output, failed, schema, complete))
    return output, failed


def unify_parts(engine: Engine, folder: OutputFolder, job: dict[str, Any], note: Note) -> pa.Schema | None:
    """Rewrite every part whose schema is not the job's; returns that schema (None without parts)."""
    with read_transaction(engine) as connection:
        stored = queue.stored_parts(connection, job["id"])
    recorded = [(seq, part, _schema(raw)) for seq, part, raw in stored if raw is not None]
    if not recorded:
        return None
    retyper = _Retyper(engine, folder, job, unify(schema for _, _, schema in recorded), note)
    for seq, part, schema in recorded:
        if schema != retyper.target:
            retyper.rewrite(seq, part, schema)
    return retyper.target


class _Retyper:
    """Rewrites one job's parts to its schema, each under a new name, and records the new file."""

    def __init__(self, engine: Engine, folder: OutputFolder, job: dict[str, Any], target: pa.Schema, note: Note):
        self.engine, self.folder, self.job, self.note = engine, folder, job, note
        self.target = target
        self.target_bytes = target.serialize().to_pybytes()

    def rewrite(self, seq: int, part: Part, schema: pa.Schema) -> None:
        fmt = self.job["format"]
        try:
            table = conform(decode(self.folder.read(part.path), fmt, schema), self.target)
        except (OSError, pa.ArrowException) as exc:  # keep the part as it is: its rows are right, only typed apart
            self.note(f"part {part.path} keeps its own schema: reading it back failed ({exc})")
            return
        name = retyped_name(part.path, self.target_bytes)
        rewritten = self.folder.write(name, encode(table, fmt), table.num_rows)
        with write_transaction(self.engine) as connection:
            queue.retype_part(connection, self.job["id"], seq, rewritten, self.target_bytes)


def _schema(raw: bytes) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(raw))
