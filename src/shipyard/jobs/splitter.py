"""Inputs → batches, as a stream: CSV, JSON lines and Parquet files, folders and globs of them, any fsspec URL.

Nothing here holds more than one batch (plus one block of the file being read), so memory stays flat
however large the input; a `.json` file holding one list is decoded as it streams in, too. Every
problem with an input is a `BadInput` that names the file (and the line or row, when one is to blame).

Column types. A field the API's schema declares is read at its declared type (int, float, str, bool);
a value that does not convert marks its row, which becomes a dead letter (`misfits.py`), unless no value
of the column converts in a file's first block: then the file is wrong, and `check` says so at submit.
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
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from fsspec.utils import infer_compression

from shipyard.jobs import misfits
from shipyard.jobs.errors import BadInput, MissingColumns, MissingIdColumn, UnconvertibleColumn
from shipyard.jobs.locations import UnusableLocation, is_local, open_location
from shipyard.jobs.misfits import convert_array, convert_text, convert_values, mark
from shipyard.jobs.schemas import column_of, conform, describe_type, same_schema, unify

Format = Literal["csv", "jsonl", "parquet"]
_SUFFIXES: dict[str, Format] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_COMPRESSIONS = tuple(s for s in (".gz", ".bz2", ".xz", ".zst", ".zip") if infer_compression(f"rows.csv{s}"))
"""The compressions fsspec can undo here (.zst only with the zstandard package): for CSV and JSON. A Parquet
file compresses its own columns and must be seekable, so a compressed one is refused."""
SUFFIXES_TEXT = (
    f"{', '.join(s for s in _SUFFIXES if s != '.pq')} or .pq; CSV and JSON optionally compressed "
    f"({', '.join(_COMPRESSIONS)})"
)
_GLOB = set("*?[")
_CSV_BLOCK = 1 << 20
_PARQUET_CHUNK = 65_536
_JSON_CHUNK = 65_536
_JSON_BLOCK = 1 << 20
_JSON_RECORD_LIMIT = 64 << 20
_REMEDY_READ = "fix the file or leave it out of --input"
_CSV_NULLS = tuple(pa_csv.ConvertOptions().null_values)
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
    name, compressed = _uncompressed(path.lower())
    for suffix, kind in _SUFFIXES.items():
        if name.endswith(suffix):
            return None if compressed and kind == "parquet" else kind
    return None


def _uncompressed(name: str) -> tuple[str, bool]:
    for suffix in _COMPRESSIONS:
        if name.endswith(suffix):
            return name.removesuffix(suffix), True
    return name, False


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
        files = sorted(p for p in fs.find(path) if _is_data(p) and not _is_hidden(p, path))
        if not files:
            raise BadInput(text, f"the folder holds no data file ({SUFFIXES_TEXT})", "point --input at data files")
        return [_source(fs, p, text) for p in files]
    if not fs.exists(path):
        raise BadInput(text, "no such file or folder", "check the path")
    return [_source(fs, path, text)]


def _is_data(path: str) -> bool:
    """A data file, or one that looks like one Shipyard cannot read (a compressed Parquet file): never
    skipped in silence."""
    name, compressed = _uncompressed(path.lower())
    return format_of(path) is not None or (compressed and name.endswith((".parquet", ".pq")))


def _is_hidden(path: str, root: str) -> bool:
    relative = path[len(root) :].lstrip("/")
    return any(part.startswith((".", "_")) for part in relative.split("/"))


def _source(fs: Any, path: str, given: str) -> Source:
    kind = format_of(path)
    if kind is None and _is_data(path):
        raise BadInput(
            path,
            "is a compressed Parquet file, which cannot be read as a stream",
            "decompress it (Parquet compresses its own columns: write it with compression='zstd' instead)",
        )
    if kind is None:
        raise BadInput(path, "has an unknown format", f"name data files {SUFFIXES_TEXT}")
    url = path if is_local(fs) else fs.unstrip_protocol(path)
    return Source(url, kind)


# -- checking: open each file and read its header before anything is enqueued ---------------------------------


def check(
    sources: Sequence[Source], required: Sequence[str], id_column: str | None = None, types: Types | None = None
) -> None:
    """Fail early: every file opens, parses at its start, carries every required column (and the id column),
    and in its first block holds values of each declared column's type (a column none of whose values
    converts is a wrong file, not a few bad rows)."""
    for source in sources:
        columns, first = _start(source, types or {})
        if columns is None:
            continue
        missing = [name for name in required if name not in columns]
        if missing:
            raise MissingColumns(source.url, missing, columns)
        if id_column is not None and id_column not in columns:
            raise MissingIdColumn(source.url, id_column, columns)
        wrong = None if first is None else misfits.unconvertible(first, types or {})
        if first is not None and wrong is not None:
            name, row, value = wrong
            kind = describe_type((types or {})[name])
            raise UnconvertibleColumn(source.url, name, kind, first.num_rows, _where(source, row), value)


def _start(source: Source, types: Types) -> tuple[list[str] | None, pa.RecordBatch | None]:
    """The file's column names (for JSON, the fields of its first 65,536 records; None for an empty file)
    and its first block as read with the declared types (None when it has no rows)."""
    if source.format == "parquet":
        with _guard(source), fsspec.open(source.url, "rb") as handle:
            parquet = pq.ParquetFile(handle)
            names = list(parquet.schema_arrow.names)
            first = next(iter(_declared(parquet.iter_batches(batch_size=_PARQUET_CHUNK), types)), None)
            return names, first
    first = next(iter(_stream(source, 0, types)), None)
    if first is None:
        return None, None
    return [name for name in first.schema.names if name not in (misfits.ERROR, misfits.AS_READ)], first


def _where(source: Source, row: int) -> str:
    if source.format == "csv":
        return f"row {row} (line {row + 2})"
    return f"record {row}" if source.format == "jsonl" else f"row {row}"


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
    as_text: list[str] = []  # declared columns that hold a value of another type: read as text, converted here
    sent = skip  # rows of the file already sent (or skipped): a reread starts after them
    while True:
        try:
            read = {**widened, **types, **dict.fromkeys(as_text, pa.string())}
            for batch in _skipped(_csv_batches(source, read), sent):
                sent += batch.num_rows
                yield _converted(batch, {name: types[name] for name in batch.schema.names if name in as_text})
            return
        except pa.ArrowInvalid as exc:
            misfit = _CSV_MISFIT.search(str(exc))
            if misfit is None:
                raise
            name = _csv_header(source)[int(misfit.group(1))]
            if name in types:
                if name in as_text:
                    raise
                as_text.append(name)
                continue
            kind = widen(misfit.group(2), misfit.group(3))
            if widened.get(name) == kind:
                raise
            widened[name] = kind


def _converted(batch: pa.RecordBatch, kinds: Types) -> pa.RecordBatch:
    """The declared columns read as text converted to their types; rows whose value does not convert marked."""
    bad = {}
    for name, kind in kinds.items():
        index = batch.schema.get_field_index(name)
        column, bad[name] = convert_text(batch.column(index), kind, _CSV_NULLS)
        batch = batch.set_column(index, name, column)
    return mark(batch, bad, kinds)


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


# -- Parquet: typed by the file; declared columns cast -------------------------------------------------------


def _read_parquet(source: Source, skip: int, types: Types) -> Iterator[pa.RecordBatch]:
    with fsspec.open(source.url, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        groups, within = _row_groups_after(parquet.metadata, skip)
        if groups:
            batches = _skipped(parquet.iter_batches(batch_size=_PARQUET_CHUNK, row_groups=groups), within)
            yield from _declared(batches, types)


def _row_groups_after(metadata: pq.FileMetaData, skip: int) -> tuple[list[int], int]:
    """Row groups that hold rows at or after `skip`, and the rows to skip within the first of them."""
    for group in range(metadata.num_row_groups):
        rows = metadata.row_group(group).num_rows
        if skip < rows:
            return list(range(group, metadata.num_row_groups)), skip
        skip -= rows
    return [], 0


def _declared(batches: Iterable[pa.RecordBatch], types: Types) -> Iterator[pa.RecordBatch]:
    """The batches with each declared column cast to its type; rows whose value does not convert marked."""
    for batch in batches:
        bad = {}
        for name in [n for n in batch.schema.names if n in types and batch.schema.field(n).type != types[n]]:
            index = batch.schema.get_field_index(name)
            column, bad[name] = convert_array(batch.column(index), types[name])
            batch = batch.set_column(index, name, column)
        yield mark(batch, bad, types)


# -- JSON: one object per line, or a file holding one list of them ------------------------------------------


def _read_jsonl(source: Source, skip: int, types: Types) -> Iterator[pa.RecordBatch]:
    with fsspec.open(source.url, "rb", compression="infer") as handle:
        text = io.BufferedReader(handle)
        is_list = _starts_with(text, b"[")
        records = _json_list(text, source) if is_list else _json_lines(text, source)
        yield from _skipped(_record_batches(records, types), skip)


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


def _record_batches(records: Iterable[tuple[int, dict[str, Any]]], types: Types) -> Iterator[pa.RecordBatch]:
    chunk: list[dict[str, Any]] = []
    for _, record in records:
        chunk.append(record)
        if len(chunk) == _JSON_CHUNK:
            yield _batch(chunk, types)
            chunk = []
    if chunk:
        yield _batch(chunk, types)


def _batch(records: list[dict[str, Any]], types: Types) -> pa.RecordBatch:
    """Records as columns: every field any of them has (absent = null), each at one type (see the module);
    rows whose declared field does not convert marked."""
    names = list(dict.fromkeys(key for record in records for key in record))
    columns = []
    bad = {}
    for name in names:
        values = [record.get(name) for record in records]
        if name in types:
            column, bad[name] = convert_values(values, types[name])
        else:
            column = column_of(values)
        columns.append(column)
    return mark(pa.RecordBatch.from_arrays(columns, names=names), bad, types)


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
