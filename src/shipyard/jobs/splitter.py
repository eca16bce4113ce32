"""Inputs → batches, as a stream: CSV, JSON lines and Parquet files, folders and globs of them, any fsspec URL.

Nothing here holds more than one batch (plus one block of the file being read), so memory stays flat
however large the input. Every problem with an input is a `BadInput` that names the file.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import fsspec
import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from shipyard.jobs.errors import BadInput

Format = Literal["csv", "jsonl", "parquet"]
_SUFFIXES: dict[str, Format] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst", ".zip")
_GLOB = set("*?[")
_CSV_BLOCK = 1 << 20
_PARQUET_CHUNK = 65_536
_REMEDY_READ = "fix the file or leave it out of --input"


@dataclass(frozen=True)
class Source:
    """One input file: where it is and how to read it."""

    url: str
    format: Format


@dataclass(frozen=True)
class Chunk:
    """One batch of rows: which source it came from and the row number of its first row there."""

    source_index: int
    offset: int
    table: pa.Table


def format_of(path: str) -> Format | None:
    name = path.lower()
    for suffix in _COMPRESSIONS:
        name = name.removesuffix(suffix)
    for suffix, kind in _SUFFIXES.items():
        if name.endswith(suffix):
            return kind
    return None


def expand(inputs: Sequence[str]) -> list[Source]:
    """Every file the inputs name, in order: a file, a folder (its data files, sorted), or a glob."""
    if not inputs:
        raise BadInput("", "no input given", "pass --input FILE, a folder, a glob or --items @file.json")
    return [source for text in inputs for source in _expand_one(text)]


def _expand_one(text: str) -> list[Source]:
    try:
        fs, path = fsspec.core.url_to_fs(text)
    except (ValueError, ImportError) as exc:
        remedy = "check the scheme and install its fsspec extra"
        raise BadInput(text, f"is not a usable path or URL ({exc})", remedy) from None
    if _GLOB & set(path):
        files = sorted(p for p in fs.glob(path) if fs.isfile(p))
        if not files:
            raise BadInput(text, "the glob matches no file", "check the pattern and the folder it looks in")
        return [_source(fs, p, text) for p in files]
    if fs.isdir(path):
        files = sorted(p for p in fs.find(path) if format_of(p) and not _is_hidden(p, path))
        if not files:
            raise BadInput(text, "the folder holds no .csv, .jsonl or .parquet file", "point --input at data files")
        return [_source(fs, p, text) for p in files]
    if not fs.exists(path):
        raise BadInput(text, "no such file or folder", "check the path")
    return [_source(fs, path, text)]


def _is_hidden(path: str, root: str) -> bool:
    relative = path[len(root) :].lstrip("/")
    return any(part.startswith((".", "_")) for part in relative.split("/"))


def _source(fs: Any, path: str, given: str) -> Source:
    kind = format_of(path)
    if kind is None:
        raise BadInput(
            path if path != given else given,
            "has an unknown format",
            "name files .csv, .jsonl (JSON lines) or .parquet, optionally compressed (.gz)",
        )
    url = path if _is_local(fs) else fs.unstrip_protocol(path)
    return Source(url, kind)


def _is_local(fs: Any) -> bool:
    protocol = fs.protocol
    return "file" in (protocol if isinstance(protocol, tuple | list) else (protocol,))


# -- checking: open each file and read its header before anything is enqueued ---------------------------------


def check(sources: Sequence[Source], required: Sequence[str]) -> None:
    """Fail early: every file opens, parses at its start, and carries every required column."""
    for source in sources:
        columns = _columns(source)
        missing = [name for name in required if columns is not None and name not in columns]
        if missing:
            raise BadInput(
                source.url,
                f"lacks the column(s) {', '.join(missing)} that the API's schema requires "
                f"(it has: {', '.join(columns or []) or 'none'})",
                "add the columns, or mark them required: false in the schema",
            )


def _columns(source: Source) -> list[str] | None:
    """The file's column names; None for an empty JSON-lines file."""
    if source.format == "parquet":
        with _guard(source), fsspec.open(source.url, "rb") as handle:
            return list(pq.ParquetFile(handle).schema_arrow.names)
    first = next(iter(_stream(source)), None)
    return None if first is None else list(first.schema.names)


# -- reading ------------------------------------------------------------------------------------------------


def split(sources: Sequence[Source], batch_size: int, start: tuple[int, int] = (0, 0)) -> Iterator[Chunk]:
    """All rows of all sources in batches of `batch_size` (a file's last batch may be smaller).

    `start` is (source index, row offset): where a resumed enqueue picks up.
    """
    first_source, skip = start
    for index in range(first_source, len(sources)):
        offset = skip if index == first_source else 0
        for table in rebatch(_stream(sources[index], offset), batch_size):
            yield Chunk(index, offset, table)
            offset += table.num_rows


def rebatch(stream: Iterable[pa.RecordBatch], size: int) -> Iterator[pa.Table]:
    """Record batches of any sizes → tables of exactly `size` rows, except perhaps the last."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in stream:
        while batch.num_rows:
            take = min(size - held, batch.num_rows)
            pending.append(batch.slice(0, take))
            held += take
            batch = batch.slice(take)
            if held == size:
                yield _table(pending)
                pending, held = [], 0
    if held:
        yield _table(pending)


def _table(batches: list[pa.RecordBatch]) -> pa.Table:
    return pa.Table.from_batches(batches).combine_chunks()


def _stream(source: Source, skip: int = 0) -> Iterator[pa.RecordBatch]:
    with _guard(source):
        readers = {"csv": _read_csv, "jsonl": _read_jsonl, "parquet": _read_parquet}
        yield from readers[source.format](source, skip)


def _skipped(stream: Iterable[pa.RecordBatch], skip: int) -> Iterator[pa.RecordBatch]:
    for batch in stream:
        if skip >= batch.num_rows:
            skip -= batch.num_rows
            continue
        yield batch.slice(skip) if skip else batch
        skip = 0


def _read_csv(source: Source, skip: int) -> Iterator[pa.RecordBatch]:
    with fsspec.open(source.url, "rb", compression="infer") as handle:
        reader = pa_csv.open_csv(handle, read_options=pa_csv.ReadOptions(block_size=_CSV_BLOCK))
        yield from _skipped(reader, skip)


def _read_parquet(source: Source, skip: int) -> Iterator[pa.RecordBatch]:
    with fsspec.open(source.url, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        groups, skip = _row_groups_after(parquet.metadata, skip)
        if groups:
            yield from _skipped(parquet.iter_batches(batch_size=_PARQUET_CHUNK, row_groups=groups), skip)


def _row_groups_after(metadata: pq.FileMetaData, skip: int) -> tuple[list[int], int]:
    """Row groups that hold rows at or after `skip`, and the rows to skip within the first of them."""
    for group in range(metadata.num_row_groups):
        rows = metadata.row_group(group).num_rows
        if skip < rows:
            return list(range(group, metadata.num_row_groups)), skip
        skip -= rows
    return [], 0


def _read_jsonl(source: Source, skip: int) -> Iterator[pa.RecordBatch]:
    with fsspec.open(source.url, "rb", compression="infer") as handle:
        text = io.BufferedReader(handle)
        if _starts_with(text, b"["):
            records = _json_list(text, source)
            yield from _skipped(
                (_batch(records[i : i + _PARQUET_CHUNK], source, i) for i in range(0, len(records), _PARQUET_CHUNK)),
                skip,
            )
            return
        yield from _skipped(_jsonl_batches(text, source), skip)


def _starts_with(handle: io.BufferedReader, prefix: bytes) -> bool:
    return handle.peek(64).lstrip()[: len(prefix)] == prefix


def _json_list(handle: io.BufferedReader, source: Source) -> list[Any]:
    """A file holding one JSON list of records (as --items takes); it is read whole."""
    try:
        records = orjson.loads(handle.read())
    except orjson.JSONDecodeError as exc:
        raise BadInput(source.url, f"is not valid JSON: {exc}", _REMEDY_READ) from None
    if not all(isinstance(record, dict) for record in records):
        raise BadInput(source.url, "must be a list of records (JSON objects)", 'write [{"a": 1}, {"a": 2}]')
    return list(records)


def _jsonl_batches(handle: io.BufferedReader, source: Source) -> Iterator[pa.RecordBatch]:
    records: list[Any] = []
    first_line = 1
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise BadInput(f"{source.url}:{number}", f"is not valid JSON: {exc}", _REMEDY_READ) from None
        if not isinstance(record, dict):
            raise BadInput(f"{source.url}:{number}", "is not a JSON object", "write one {...} record per line")
        records.append(record)
        if len(records) == _PARQUET_CHUNK:
            yield _batch(records, source, first_line)
            records, first_line = [], number + 1
    if records:
        yield _batch(records, source, first_line)


def _batch(records: list[Any], source: Source, first_line: int) -> pa.RecordBatch:
    try:
        return pa.RecordBatch.from_pylist(records)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise BadInput(
            source.url, f"records from line {first_line} on mix types within one field: {exc}", _REMEDY_READ
        ) from None


class _guard:
    """Turn the readers' I/O and parse errors into a BadInput that names the file."""

    def __init__(self, source: Source) -> None:
        self.source = source

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is None or isinstance(exc, BadInput | GeneratorExit):
            return
        if isinstance(exc, FileNotFoundError):
            raise BadInput(self.source.url, "no such file", "check the path") from None
        if isinstance(exc, OSError | pa.ArrowException | UnicodeDecodeError | ValueError):
            what = {"csv": "CSV", "jsonl": "JSON lines", "parquet": "Parquet"}[self.source.format]
            raise BadInput(self.source.url, f"cannot be read as {what}: {exc}", _REMEDY_READ) from None
