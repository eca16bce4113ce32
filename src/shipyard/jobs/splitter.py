"""Inputs → batches, as a stream: CSV, JSON lines and Parquet files, folders and globs of them, any fsspec URL.

Nothing here holds more than one batch (plus one block of the file being read), so memory stays flat
however large the input; a `.json` file holding one list is decoded as it streams in, too. Every
problem with an input is a `BadInput` that names the file (and the line or row, when one is to blame).

Column types. A field the API's schema declares is read at its declared type (int, float, str, bool).
Any other column starts at the type its first rows suggest and is widened when a later value does not
fit: a JSON-lines field's values are typed per 65,536 lines, and a CSV file is read again from its start
(skipping the rows already sent) with the column widened, null -> int -> float -> string. Every batch's
rows have one schema; batches may differ, and the job's output gets one schema when it ends (see
`schemas.py`).
"""

from __future__ import annotations

import codecs
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import fsspec
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from shipyard.jobs.errors import BadInput, MissingColumns, MissingIdColumn
from shipyard.jobs.locations import UnusableLocation, is_local, open_location
from shipyard.jobs.schemas import column_of, conform, describe_type, first_misfit, same_schema, unify

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
_JSON_CHUNK = 65_536
_JSON_BLOCK = 1 << 20
_JSON_RECORD_LIMIT = 64 << 20
_REMEDY_READ = "fix the file or leave it out of --input"
_REMEDY_TYPE = "fix the value, or change the field's type in the API's schema"
_CSV_MISFIT = re.compile(r"In CSV column #(\d+): CSV conversion error to ([\w\[\], :/]+): invalid value '(.*)'", re.S)
_INT_TEXT = re.compile(r"[+-]?\d+")
Types = Mapping[str, pa.DataType]


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
        fs, path = open_location(text)
    except UnusableLocation as exc:
        raise BadInput(text, exc.problem, exc.remedy) from None
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
    url = path if is_local(fs) else fs.unstrip_protocol(path)
    return Source(url, kind)


# -- checking: open each file and read its header before anything is enqueued ---------------------------------


def check(sources: Sequence[Source], required: Sequence[str], id_column: str | None = None) -> None:
    """Fail early: every file opens, parses at its start, and carries every required column (and the id column)."""
    for source in sources:
        columns = _columns(source)
        if columns is None:
            continue
        missing = [name for name in required if name not in columns]
        if missing:
            raise MissingColumns(source.url, missing, columns)
        if id_column is not None and id_column not in columns:
            raise MissingIdColumn(source.url, id_column, columns)


def _columns(source: Source) -> list[str] | None:
    """The file's column names (for JSON, the fields of its first 65,536 records); None for an empty file."""
    if source.format == "parquet":
        with _guard(source), fsspec.open(source.url, "rb") as handle:
            return list(pq.ParquetFile(handle).schema_arrow.names)
    first = next(iter(_stream(source)), None)
    return None if first is None else list(first.schema.names)


# -- reading ------------------------------------------------------------------------------------------------


def split(
    sources: Sequence[Source], batch_size: int, start: tuple[int, int] = (0, 0), types: Types | None = None
) -> Iterator[Chunk]:
    """All rows of all sources in batches of `batch_size` (a file's last batch may be smaller).

    `start` is (source index, row offset): where a resumed enqueue picks up. `types` are the columns'
    declared types (the API's schema).
    """
    first_source, skip = start
    for index in range(first_source, len(sources)):
        source = sources[index]
        offset = skip if index == first_source else 0
        with _guard(source):
            for table in rebatch(_stream(source, offset, types or {}), batch_size):
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
    """One table of the batches; when their types differ (a column widened part-way), at the widest."""
    if same_schema(batches):
        return pa.Table.from_batches(batches).combine_chunks()
    target = unify(batch.schema for batch in batches)
    return pa.concat_tables([conform(pa.Table.from_batches([b]), target) for b in batches]).combine_chunks()


def _stream(source: Source, skip: int = 0, types: Types | None = None) -> Iterator[pa.RecordBatch]:
    with _guard(source):
        readers = {"csv": _read_csv, "jsonl": _read_jsonl, "parquet": _read_parquet}
        yield from readers[source.format](source, skip, types or {})


def _skipped(stream: Iterable[pa.RecordBatch], skip: int) -> Iterator[pa.RecordBatch]:
    for batch in stream:
        if skip >= batch.num_rows:
            skip -= batch.num_rows
            continue
        yield batch.slice(skip) if skip else batch
        skip = 0


# -- CSV: declared columns at their type; the others widened (and the file reread) when a value does not fit --


def _read_csv(source: Source, skip: int, types: Types) -> Iterator[pa.RecordBatch]:
    widened: dict[str, pa.DataType] = {}
    sent = skip  # rows of the file already sent (or skipped): a reread starts after them
    while True:
        try:
            for batch in _skipped(_csv_batches(source, {**widened, **types}), sent):
                sent += batch.num_rows
                yield batch
            return
        except pa.ArrowInvalid as exc:
            misfit = _CSV_MISFIT.search(str(exc))
            if misfit is None:
                raise
            name = _csv_header(source)[int(misfit.group(1))]
            if name in types:
                raise _csv_type_error(source, name, types[name], sent) from None
            kind = widen(misfit.group(2), misfit.group(3))
            if widened.get(name) == kind:
                raise
            widened[name] = kind


def _csv_batches(source: Source, types: Types) -> Iterator[pa.RecordBatch]:
    with fsspec.open(source.url, "rb", compression="infer") as handle:
        yield from pa_csv.open_csv(
            handle,
            read_options=pa_csv.ReadOptions(block_size=_CSV_BLOCK),
            convert_options=pa_csv.ConvertOptions(column_types=dict(types)),
        )


def _csv_header(source: Source) -> list[str]:
    with fsspec.open(source.url, "rb", compression="infer") as handle:
        return list(pa_csv.open_csv(handle, read_options=pa_csv.ReadOptions(block_size=_CSV_BLOCK)).schema.names)


def widen(kind: str, value: str) -> pa.DataType:
    """The type a CSV column needs once `value` turned up in it: null -> int -> float -> string."""
    if kind == "null" and _INT_TEXT.fullmatch(value.strip()):
        return pa.int64()
    if (kind == "null" or kind.startswith(("int", "uint"))) and _is_number(value):
        return pa.float64()
    return pa.string()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_type_error(source: Source, name: str, kind: pa.DataType, after: int) -> BadInput:
    """Name the first row (after the `after` rows already sent) whose value in `name` is not of its declared type."""
    row = 0
    with fsspec.open(source.url, "rb", compression="infer") as handle:
        options = pa_csv.ConvertOptions(
            include_columns=[name], column_types={name: pa.string()}, strings_can_be_null=True
        )
        for batch in pa_csv.open_csv(
            handle, read_options=pa_csv.ReadOptions(block_size=_CSV_BLOCK), convert_options=options
        ):
            values = batch.column(0).to_pylist()
            index = first_misfit(values, kind) if row + batch.num_rows > after else None
            if index is not None:
                return _type_error(source.url, f"row {row + index} (line {row + index + 2})", name, values[index], kind)
            row += batch.num_rows
    return BadInput(source.url, f"column {name!r} holds a value that is not {describe_type(kind)}", _REMEDY_TYPE)


def _type_error(label: str, where: str, name: str, value: Any, kind: pa.DataType) -> BadInput:
    problem = f"{name!r} is {value!r}, which is not {describe_type(kind)} as the API's schema declares"
    return BadInput(label, f"{where}: {problem}" if where else problem, _REMEDY_TYPE)


# -- Parquet: typed by the file; declared columns cast -------------------------------------------------------


def _read_parquet(source: Source, skip: int, types: Types) -> Iterator[pa.RecordBatch]:
    with fsspec.open(source.url, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        groups, within = _row_groups_after(parquet.metadata, skip)
        if groups:
            batches = _skipped(parquet.iter_batches(batch_size=_PARQUET_CHUNK, row_groups=groups), within)
            yield from _declared(batches, types, source, skip)


def _row_groups_after(metadata: pq.FileMetaData, skip: int) -> tuple[list[int], int]:
    """Row groups that hold rows at or after `skip`, and the rows to skip within the first of them."""
    for group in range(metadata.num_row_groups):
        rows = metadata.row_group(group).num_rows
        if skip < rows:
            return list(range(group, metadata.num_row_groups)), skip
        skip -= rows
    return [], 0


def _declared(batches: Iterable[pa.RecordBatch], types: Types, source: Source, row: int) -> Iterator[pa.RecordBatch]:
    """The batches with each declared column cast to its type; `row` is the first batch's first row."""
    for batch in batches:
        for name in [n for n in batch.schema.names if n in types and batch.schema.field(n).type != types[n]]:
            index = batch.schema.get_field_index(name)
            try:
                column = pc.cast(batch.column(index), types[name])
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                values = batch.column(index).to_pylist()
                at = first_misfit(values, types[name]) or 0
                raise _type_error(source.url, f"row {row + at}", name, values[at], types[name]) from None
            batch = batch.set_column(index, name, column)
        yield batch
        row += batch.num_rows


# -- JSON: one object per line, or a file holding one list of them ------------------------------------------


def _read_jsonl(source: Source, skip: int, types: Types) -> Iterator[pa.RecordBatch]:
    with fsspec.open(source.url, "rb", compression="infer") as handle:
        text = io.BufferedReader(handle)
        is_list = _starts_with(text, b"[")
        records = _json_list(text, source) if is_list else _json_lines(text, source)
        yield from _skipped(_record_batches(records, source, types, "record" if is_list else "line"), skip)


def _starts_with(handle: io.BufferedReader, prefix: bytes) -> bool:
    return handle.peek(64).lstrip()[: len(prefix)] == prefix


def _json_lines(handle: io.BufferedReader, source: Source) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise BadInput(f"{source.url}:{number}", f"is not valid JSON: {exc}", _REMEDY_READ) from None
        if not isinstance(record, dict):
            raise BadInput(f"{source.url}:{number}", "is not a JSON object", "write one {...} record per line")
        yield number, record


def _json_list(handle: io.BufferedReader, source: Source) -> Iterator[tuple[int, dict[str, Any]]]:
    """The records of a file that holds one JSON list, decoded as the file streams in (never read whole)."""
    return _JsonListReader(handle, source).records()


def _record_batches(
    records: Iterable[tuple[int, dict[str, Any]]], source: Source, types: Types, unit: str
) -> Iterator[pa.RecordBatch]:
    chunk: list[dict[str, Any]] = []
    positions: list[int] = []
    for position, record in records:
        chunk.append(record)
        positions.append(position)
        if len(chunk) == _JSON_CHUNK:
            yield _batch(chunk, positions, source, types, unit)
            chunk, positions = [], []
    if chunk:
        yield _batch(chunk, positions, source, types, unit)


def _batch(
    records: list[dict[str, Any]], positions: list[int], source: Source, types: Types, unit: str
) -> pa.RecordBatch:
    """Records as columns: every field any of them has (absent = null), each at one type (see the module)."""
    names = list(dict.fromkeys(key for record in records for key in record))
    columns = []
    for name in names:
        values = [record.get(name) for record in records]
        try:
            columns.append(column_of(values, types.get(name)))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            at = first_misfit(values, types[name]) or 0
            where = f"{source.url}:{positions[at]}" if unit == "line" else f"{source.url}, record {positions[at]}"
            raise _type_error(where, "", name, values[at], types[name]) from None
    return pa.RecordBatch.from_arrays(columns, names=names)


class _JsonListReader:
    """Decodes `[{...}, {...}, ...]` one record at a time from 1 MB blocks (json.JSONDecoder.raw_decode)."""

    def __init__(self, handle: io.BufferedReader, source: Source) -> None:
        self.handle = handle
        self.source = source
        self.text = codecs.getincrementaldecoder("utf-8")()
        self.decoder = json.JSONDecoder()
        self.buffer = ""
        self.at = 0
        self.eof = False

    def records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        self._expect("[")
        if self._peek() == "]":
            self.at += 1
        else:
            index = 0
            while True:
                yield index, self._record(index)
                index += 1
                if self._next_char(index) == "]":
                    break
        if self._peek() != "":
            raise self._bad("has text after the list's closing ]")

    def _record(self, index: int) -> dict[str, Any]:
        if self._peek() != "{":
            raise BadInput(self.source.url, "must be a list of records (JSON objects)", 'write [{"a": 1}, {"a": 2}]')
        while True:
            try:
                record, end = self.decoder.raw_decode(self.buffer, self.at)
            except json.JSONDecodeError as exc:
                if self.eof:
                    raise self._bad(f"is not valid JSON at record {index}: {exc.msg}") from None
                if len(self.buffer) - self.at > _JSON_RECORD_LIMIT:  # broken, or one record too big to hold
                    raise self._bad(f"record {index} is not valid JSON within its first 64 MB: {exc.msg}") from None
                self._read()
                continue
            self.at = end
            return record  # type: ignore[no-any-return]

    def _next_char(self, index: int) -> str:
        found = self._peek()
        if found not in (",", "]"):
            raise self._bad(f"is not valid JSON after record {index - 1}: expected , or ]")
        self.at += 1
        return found

    def _expect(self, char: str) -> None:
        if self._peek() != char:
            raise self._bad(f"is not valid JSON: expected {char}")
        self.at += 1

    def _peek(self) -> str:
        """The next character that is not white space ('' at the end of the file)."""
        while True:
            while self.at < len(self.buffer) and self.buffer[self.at].isspace():
                self.at += 1
            if self.at < len(self.buffer) or self.eof:
                return self.buffer[self.at] if self.at < len(self.buffer) else ""
            self._read()

    def _read(self) -> None:
        data = self.handle.read(_JSON_BLOCK)
        self.eof = not data
        self.buffer = self.buffer[self.at :] + self.text.decode(data, final=self.eof)
        self.at = 0

    def _bad(self, problem: str) -> BadInput:
        return BadInput(self.source.url, problem, _REMEDY_READ)


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
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise BadInput(self.source.url, f"cannot be read as {what}: {detail}", _REMEDY_READ) from None
