"""The job's output folder: parts written under a temporary name and renamed, dead letters, the manifest.

Layout of DEST (a local folder or any fsspec URL):

    part-000000-1.parquet        one part per batch, rows in input order (-1: the lease that wrote it)
    part-000003-1-s1a2b3c4.parquet  a part rewritten at the job's end to the job's one schema
    _failed/part-000007-3.jsonl  the batch's dead letters: input columns + _error, _source, _row
    _manifest.json               written last: every part, its rows and sha256, the schema, and whether
                                 the job completed ("complete": true); no manifest = unfinished

A part's name carries the lease that wrote it, so a worker that lost its lease can never overwrite the
winner's file; the manifest lists only the parts the store recorded, and `clean()` removes the others.
"""

from __future__ import annotations

import hashlib
import io
import re
import uuid
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any, Literal

import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from shipyard.jobs.errors import BadOutput
from shipyard.jobs.locations import UnusableLocation, open_location
from shipyard.jobs.queue import Part

OutputFormat = Literal["parquet", "jsonl", "csv"]
FORMATS: tuple[OutputFormat, ...] = ("parquet", "jsonl", "csv")
MANIFEST = "_manifest.json"
FAILED_DIR = "_failed"
_OURS = ("part-", ".tmp-")


def part_name(seq: int, attempt: int, fmt: OutputFormat) -> str:
    return f"part-{seq:06d}-{attempt}.{fmt}"


def failed_name(seq: int, attempt: int) -> str:
    return f"{FAILED_DIR}/part-{seq:06d}-{attempt}.jsonl"


_RETYPED = re.compile(r"-s[0-9a-f]{8}(?=\.[a-z]+$)")


def retyped_name(path: str, schema: bytes) -> str:
    """The name of `path` rewritten to `schema`: the same for the same schema, so a rerun overwrites it."""
    stem, suffix = _RETYPED.sub("", path).rsplit(".", 1)
    return f"{stem}-s{hashlib.sha256(schema).hexdigest()[:8]}.{suffix}"


# -- encoding (pure) --------------------------------------------------------------------------------------


def prepare(table: pa.Table, fmt: OutputFormat) -> pa.Table:
    """The table as the format stores it: CSV holds no lists or records, so those become JSON text."""
    return _flat(table) if fmt == "csv" else table


def encode(table: pa.Table, fmt: OutputFormat) -> bytes:
    """A prepared table (see `prepare`) as the bytes of one part."""
    if fmt == "parquet":
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        return buffer.getvalue()
    if fmt == "csv":
        buffer = io.BytesIO()
        pa_csv.write_csv(table, buffer)
        return buffer.getvalue()
    return encode_records(table.to_pylist())


def decode(data: bytes, fmt: OutputFormat, schema: pa.Schema) -> pa.Table:
    """A part's bytes back as the table that was written (`schema`: the one recorded when it was)."""
    if fmt == "parquet":
        return pq.read_table(io.BytesIO(data))
    if fmt == "csv":
        options = pa_csv.ConvertOptions(column_types=schema, strings_can_be_null=True, quoted_strings_can_be_null=False)
        return pa_csv.read_csv(io.BytesIO(data), convert_options=options)
    if not data:
        return schema.empty_table()
    return pa_json.read_json(io.BytesIO(data), parse_options=pa_json.ParseOptions(explicit_schema=schema))


def encode_records(records: Iterable[dict[str, Any]]) -> bytes:
    option = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE
    return b"".join(orjson.dumps(record, option=option, default=str) for record in records)


def _flat(table: pa.Table) -> pa.Table:
    """CSV cannot hold lists or records: such columns become JSON text."""
    for index, field in enumerate(table.schema):
        if pa.types.is_nested(field.type):
            texts = [
                None if v is None else orjson.dumps(v, default=str).decode() for v in table.column(index).to_pylist()
            ]
            table = table.set_column(index, field.name, pa.array(texts, pa.string()))
    return table


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- the folder (side effects) ----------------------------------------------------------------------------


class OutputFolder:
    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.fs, self.root = open_location(url)
        except UnusableLocation as exc:
            raise BadOutput(url, exc.problem, exc.remedy) from None
        self.root = self.root.rstrip("/")

    def _path(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def write(self, relative: str, data: bytes, rows: int) -> Part:
        """Write under a temporary name, then rename into place: a reader never sees half a file."""
        final = self._path(relative)
        folder, name = final.rsplit("/", 1)
        temporary = f"{folder}/.tmp-{name}-{uuid.uuid4().hex[:8]}"
        self.fs.makedirs(folder, exist_ok=True)
        self.fs.pipe_file(temporary, data)
        self.fs.mv(temporary, final)
        return Part(relative, rows, digest(data), len(data))

    def check_usable(self) -> None:
        """DEST must be new or empty; never mix two jobs. Nothing is created here (see `create`)."""
        try:
            if not self.fs.exists(self.root):
                return
            if not self.fs.isdir(self.root):
                raise BadOutput(self.url, "is a file", "name a folder")
            entries = self.fs.ls(self.root, detail=False)
        except OSError as exc:
            raise BadOutput(self.url, f"cannot be used: {exc}", "check the path and its permissions") from None
        if entries:
            raise BadOutput(self.url, f"already holds {len(entries)} file(s)", "choose a new or empty folder")

    def create(self) -> bool:
        """Make the folder (so a permission problem shows at submit); True when it did not exist before."""
        try:
            if self.fs.exists(self.root):
                return False
            self.fs.makedirs(self.root, exist_ok=True)
        except OSError as exc:
            raise BadOutput(self.url, f"cannot be created: {exc}", "check the path and its permissions") from None
        return True

    def remove_if_empty(self) -> None:
        """Undo `create` after a submit that failed: the folder goes if nothing was written into it."""
        try:
            if self.fs.isdir(self.root) and not self.fs.ls(self.root, detail=False):
                self.fs.rmdir(self.root)
        except OSError:
            pass  # best effort: an empty folder left behind harms nothing

    def read(self, relative: str) -> bytes:
        return bytes(self.fs.cat_file(self._path(relative)))

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        data = orjson.dumps(manifest, option=orjson.OPT_INDENT_2)
        self.write(MANIFEST, data, 0)

    def read_manifest(self) -> dict[str, Any] | None:
        path = self._path(MANIFEST)
        if not self.fs.exists(path):
            return None
        result: dict[str, Any] = orjson.loads(self.fs.cat_file(path))
        return result

    def remove_manifest(self) -> None:
        path = self._path(MANIFEST)
        if self.fs.exists(path):
            self.fs.rm_file(path)

    def clean(self, keep: set[str]) -> list[str]:
        """Remove parts and temporary files that the manifest does not list (lost leases, retried dead letters)."""
        removed = []
        for folder in (self.root, self._path(FAILED_DIR)):
            if not self.fs.isdir(folder):
                continue
            for path in self.fs.ls(folder, detail=False):
                relative = path[len(self.root) + 1 :]
                if path.rsplit("/", 1)[-1].startswith(_OURS) and relative not in keep:
                    self.fs.rm_file(path)
                    removed.append(relative)
        return removed


def manifest(
    job: dict[str, Any], parts: list[Part], failed: list[Part], schema: pa.Schema | None, complete: bool
) -> dict[str, Any]:
    """`complete` is False for a job that stopped, timed out or failed: its parts hold only some rows."""
    return {
        "job": job["id"],
        "api": job["api"],
        "format": job["format"],
        "state": job["state"],
        "complete": complete,
        "rows": sum(part.rows for part in parts),
        "failed_rows": sum(part.rows for part in failed),
        "schema": [{"name": field.name, "type": str(field.type)} for field in schema or []],
        "parts": [asdict(part) for part in parts],
        "failed": [asdict(part) for part in failed],
    }
