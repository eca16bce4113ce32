"""Values that do not convert to their declared type: their rows become dead letters, not a failed job.

The splitter reads a field the API's schema declares at its type. A value that does not convert (`'abc'`
in a float column) sets that field to null, and the row travels in its batch marked with two hidden
columns: `ERROR` (why it did not convert; null on the rows that did) and `AS_READ` (the bad fields'
values as the file held them, as JSON). A batch with no such value carries neither column. The worker
takes the marks off before the handler sees the rows (`take`): a marked row is dead-lettered with its
error and its values as read, unrun; `restore` puts the marks back on the dead letters kept for a retry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from shipyard.jobs.schemas import column_of, describe_type

ERROR = "__shipyard_misfit"
AS_READ = "__shipyard_as_read"
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError)

Bad = dict[int, Any]
"""Row index in the batch -> the value as read, for one column."""


@dataclass(frozen=True)
class Misfits:
    """A batch's rows whose values did not convert: row index -> error, and -> the bad values as read."""

    errors: dict[int, str] = field(default_factory=dict)
    as_read: dict[int, dict[str, Any]] = field(default_factory=dict)


def error_text(name: str, value: Any, kind: pa.DataType) -> str:
    return f"{name!r} is {value!r}, which is not {describe_type(kind)} as the API's schema declares"


# -- converting (the splitter's side) ------------------------------------------------------------------------


def convert_values(values: Sequence[Any], kind: pa.DataType) -> tuple[pa.Array, Bad]:
    """Python values as a column of `kind`; those that do not convert become null and are returned."""
    try:
        return column_of(values, kind), {}
    except _ARROW_ERRORS:
        pass
    bad: Bad = {}
    for index, value in enumerate(values):
        try:
            column_of([value], kind)
        except _ARROW_ERRORS:
            bad[index] = value
    return column_of([None if i in bad else v for i, v in enumerate(values)], kind), bad


def convert_array(column: pa.Array, kind: pa.DataType) -> tuple[pa.Array, Bad]:
    """An Arrow column cast to `kind`; the values that do not convert become null and are returned."""
    try:
        return pc.cast(column, kind), {}
    except _ARROW_ERRORS:
        return convert_values(column.to_pylist(), kind)


def convert_text(column: pa.Array, kind: pa.DataType, nulls: Sequence[str]) -> tuple[pa.Array, Bad]:
    """CSV text as `kind`, as the CSV reader converts it: surrounding blanks ignored, its null markers
    (`''`, `NA`, `n/a`, ...) null; the values that do not convert become null and are returned as read."""
    trimmed = pc.utf8_trim_whitespace(column)
    text = pc.if_else(pc.is_in(trimmed, value_set=pa.array(list(nulls), pa.string())), None, trimmed)
    converted, bad = convert_array(text, kind)
    return converted, {index: column[index].as_py() for index in bad}


def mark(batch: pa.RecordBatch, bad: Mapping[str, Bad], kinds: Mapping[str, pa.DataType]) -> pa.RecordBatch:
    """The batch with its misfit rows marked (see the module); unchanged when no value misfit."""
    rows: dict[int, dict[str, Any]] = {}
    for name, column in bad.items():
        for index, value in column.items():
            rows.setdefault(index, {})[name] = value
    if not rows:
        return batch
    errors: list[str | None] = [None] * batch.num_rows
    as_read: list[str | None] = [None] * batch.num_rows
    for index, values in rows.items():
        errors[index] = "; ".join(error_text(name, value, kinds[name]) for name, value in values.items())
        as_read[index] = orjson.dumps(values, default=str).decode()
    arrays = [*batch.columns, pa.array(errors, pa.string()), pa.array(as_read, pa.string())]
    return pa.RecordBatch.from_arrays(arrays, names=[*batch.schema.names, ERROR, AS_READ])


def unconvertible(batch: pa.RecordBatch, kinds: Mapping[str, pa.DataType]) -> tuple[str, int, Any] | None:
    """(column, first row, its value as read) of a declared column none of whose values in `batch`
    converted, though some were there: the file, not a row, is wrong."""
    if ERROR not in batch.schema.names:
        return None
    as_read = [None if text is None else orjson.loads(text) for text in batch.column(AS_READ).to_pylist()]
    for name in kinds:
        if name not in batch.schema.names or batch.column(name).null_count < batch.num_rows:
            continue
        bad = [(index, values[name]) for index, values in enumerate(as_read) if values and name in values]
        if bad:
            return name, bad[0][0], bad[0][1]
    return None


# -- taking the marks off and back on (the worker's side) ---------------------------------------------------


def take(table: pa.Table) -> tuple[pa.Table, Misfits]:
    """The batch without its marks, and the rows they marked."""
    if ERROR not in table.column_names:
        return table, Misfits()
    errors, texts = table.column(ERROR).to_pylist(), table.column(AS_READ).to_pylist()
    found = Misfits(
        {index: error for index, error in enumerate(errors) if error is not None},
        {index: orjson.loads(text) for index, text in enumerate(texts) if text is not None},
    )
    return table.drop_columns([ERROR, AS_READ]), found


def restore(rows: pa.Table, indices: Sequence[int], misfits: Misfits) -> pa.Table:
    """`rows` (the batch's rows at `indices`) with their marks back on, so that a retry dead-letters them again."""
    if not any(index in misfits.errors for index in indices):
        return rows
    errors = [misfits.errors.get(index) for index in indices]
    texts = [orjson.dumps(misfits.as_read[i], default=str).decode() if i in misfits.as_read else None for i in indices]
    return rows.append_column(ERROR, pa.array(errors, pa.string())).append_column(AS_READ, pa.array(texts, pa.string()))
