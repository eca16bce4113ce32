"""Run the handler over one batch's rows and shape what it returns into output rows and dead letters.

In `batch` mode all rows go to one `predict_batch` call (or `predict` per row when the handler has no
`predict_batch`); if that raises, the whole batch failed and is retried. A result that *is* an exception
(built-in handlers answer a malformed row that way) fails only its row. In `rows` mode every row runs on
its own and only the rows that raise are dead-lettered; rows during which a worker died before are not
run again but dead-lettered with how it died (`RowByRow`). Rows whose values did not convert to their
declared types (`misfits.py`) never run: they are dead-lettered with the conversion error, in any mode.

A built-in handler skips the records altogether when the batch's feature columns are plain numbers
without nulls: they become one matrix, of the dtype the records' values would have given, and its
predictions one column. Same estimator call, same values, no Python object per row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import numpy as np
import orjson
import pyarrow as pa

from shipyard.jobs.misfits import Misfits, restore
from shipyard.jobs.states import Mode
from shipyard.serving.handler import BoundHandler

_NO_HEADERS: Mapping[str, str] = MappingProxyType({})
ROW_COLUMN = "__shipyard_row"
"""In a batch's stored dead letters: each row's number in its source, so a retry keeps naming it."""


class BatchFailed(Exception):
    """The batch as a whole failed; it goes back to the queue (arq's `Retry`, in spirit)."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


@dataclass
class Scored:
    """Results of the rows that worked, in input order, and the error of each row that did not."""

    ok: list[int] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)
    columns: dict[str, list[Any]] | None = None
    """The results already as columns (the columnar path), instead of one result per row."""


class RowNotRun(Exception):
    """A row is dead-lettered without running: a worker died while it ran before."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def _nothing(_index: int) -> None:
    return None


@dataclass(frozen=True)
class RowByRow:
    """Row mode's bookkeeping: rows not to run again (index -> why), and a call before each row runs
    (the worker records the row it is on, so that a death there blames that row)."""

    skip: Mapping[int, str] = field(default_factory=dict)
    before: Callable[[int], None] = _nothing


@runtime_checkable
class MatrixHandler(Protocol):
    """A built-in handler that scores a feature matrix directly (see `SklearnHandler.predict_matrix`)."""

    features: list[str] | None

    def predict_matrix(self, matrix: np.ndarray) -> list[Any]: ...


def describe(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return f"{type(exc).__name__}: {message}"


def score_table(
    handler: BoundHandler,
    table: pa.Table,
    mode: Mode,
    columnar: bool = False,
    rows: RowByRow | None = None,
    preset: Mapping[int, str] | None = None,
) -> Scored:
    """`score` over a batch's table; with `columnar` (built-in handlers only), by matrix when it can.
    Rows in `preset` (index -> error) are not run: they fail with that error."""
    if preset:
        return _around(handler, table, mode, columnar, rows, preset)
    instance = handler.instance
    if columnar and mode is Mode.batch and isinstance(instance, MatrixHandler):
        matrix = feature_matrix(table, instance.features)
        if matrix is not None:
            return _by_matrix(instance, matrix)
    return score(handler, table.to_pylist(), mode, rows)


def _around(
    handler: BoundHandler,
    table: pa.Table,
    mode: Mode,
    columnar: bool,
    rows: RowByRow | None,
    preset: Mapping[int, str],
) -> Scored:
    """Score the rows not in `preset` on their own, then give every result its index in `table` again."""
    keep = [index for index in range(table.num_rows) if index not in preset]
    inner = Scored()
    if keep:
        if rows is not None:
            skip = {at: rows.skip[index] for at, index in enumerate(keep) if index in rows.skip}
            before = rows.before
            rows = RowByRow(skip, lambda at: before(keep[at]))
        inner = score_table(handler, table.take(pa.array(keep, pa.int64())), mode, columnar, rows)
    errors = {keep[at]: error for at, error in inner.errors.items()} | dict(preset)
    return Scored([keep[at] for at in inner.ok], inner.results, errors, inner.columns)


def feature_matrix(table: pa.Table, features: list[str] | None) -> np.ndarray | None:
    """The feature columns as one matrix, int64 if all are integers else float64 (as np.asarray makes of
    the records' values); None unless each is a distinct column of plain numbers without nulls."""
    names = table.column_names
    if not features or not table.num_rows or len(set(names)) != len(names) or not set(features) <= set(names):
        return None
    columns = [table.column(name) for name in features]
    if any(column.null_count or not _is_plain_number(column.type) for column in columns):
        return None
    dtype = np.int64 if all(pa.types.is_integer(column.type) for column in columns) else np.float64
    matrix = np.empty((table.num_rows, len(columns)), dtype=dtype)
    for index, column in enumerate(columns):
        matrix[:, index] = column.to_numpy()
    return matrix


def _is_plain_number(kind: pa.DataType) -> bool:
    if pa.types.is_unsigned_integer(kind):
        return bool(kind.bit_width < 64)  # a uint64 may not fit the int64 that Python ints become
    return bool(pa.types.is_signed_integer(kind) or kind in (pa.float32(), pa.float64()))


def _by_matrix(handler: MatrixHandler, matrix: np.ndarray) -> Scored:
    try:
        values = handler.predict_matrix(matrix)
    except Exception as exc:  # as in batch mode: the batch failed and is retried (then row by row)
        raise BatchFailed(describe(exc)) from exc
    if len(values) != len(matrix):
        raise BatchFailed(f"the model returned {len(values)} predictions for {len(matrix)} rows")
    return Scored(list(range(len(values))), columns={"prediction": values})


def score(handler: BoundHandler, records: list[dict[str, Any]], mode: Mode, rows: RowByRow | None = None) -> Scored:
    if mode is Mode.rows:
        return _one_by_one(handler, records, rows or RowByRow())
    try:
        results = _call(handler, records)
    except Exception as exc:  # the user's code: anything it raises fails the batch, which is retried
        raise BatchFailed(describe(exc)) from exc
    if len(results) != len(records):
        raise BatchFailed(f"predict_batch returned {len(results)} results for {len(records)} rows")
    return _collect(results)


def _call(handler: BoundHandler, records: list[dict[str, Any]]) -> list[Any]:
    if handler.predict_batch is not None:
        empty: list[Mapping[str, str]] = [_NO_HEADERS] * len(records)
        return list(handler.predict_batch(records, empty, empty))
    return [handler.predict(record, None, None) for record in records]


def _one_by_one(handler: BoundHandler, records: list[dict[str, Any]], rows: RowByRow) -> Scored:
    results: list[Any] = []
    for index, record in enumerate(records):
        if index in rows.skip:
            results.append(RowNotRun(rows.skip[index]))
            continue
        rows.before(index)
        try:
            results.append(_call(handler, [record])[0])
        except Exception as exc:  # this row is bad; the others still run
            results.append(exc)
    return _collect(results)


def _collect(results: list[Any]) -> Scored:
    """Split results into the rows that worked and the rows whose result is an exception."""
    if not any(isinstance(result, BaseException) for result in results):
        return Scored(list(range(len(results))), results)  # the common case, without a loop per row
    scored = Scored()
    for index, result in enumerate(results):
        if isinstance(result, BaseException):
            scored.errors[index] = result.error if isinstance(result, RowNotRun) else describe(result)
        else:
            scored.ok.append(index)
            scored.results.append(result)
    return scored


def output_table(inputs: pa.Table, scored: Scored, id_column: str | None) -> pa.Table:
    """The rows that worked: the input's columns (or only the id column) beside the prediction columns."""
    table = inputs.select([id_column]) if id_column else inputs
    if len(scored.ok) != table.num_rows:
        table = table.take(pa.array(scored.ok, pa.int64()))
    columns = scored.columns if scored.columns is not None else _columns(scored.results)
    for key, values in columns.items():
        name = f"{key}_result" if key in table.column_names else key
        table = table.append_column(name, _column(values))
    return table


def _columns(results: list[Any]) -> dict[str, list[Any]]:
    """Results as columns: a dict's keys become columns, anything else is `prediction`."""
    first = results[0] if results else None
    if isinstance(first, dict) and all(type(r) is dict and r.keys() == first.keys() for r in results):
        return {str(key): [r[key] for r in results] for key in first}  # the common case: same keys
    rows = [result if isinstance(result, dict) else {"prediction": result} for result in results]
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row))
    return {str(key): [row.get(key) for row in rows] for key in keys}


def _column(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        option = orjson.OPT_SERIALIZE_NUMPY
        return pa.array([None if v is None else orjson.dumps(v, option=option, default=str).decode() for v in values])


def dead_letters(
    inputs: pa.Table, scored: Scored, row_numbers: list[int], source: str, marked: Misfits | None = None
) -> tuple[list[dict[str, Any]], pa.Table]:
    """The failed rows for `_failed/` (input columns + _error, _source, _row; a value that did not convert as
    read) and, for retries, as a table (marked again where a value did not convert)."""
    marked = marked or Misfits()
    failed = sorted(scored.errors)
    table = inputs.take(pa.array(failed, pa.int64()))
    numbers = [row_numbers[index] for index in failed]
    records = [
        {**record, **marked.as_read.get(index, {}), "_error": scored.errors[index], "_source": source, "_row": number}
        for record, index, number in zip(table.to_pylist(), failed, numbers, strict=True)
    ]
    kept = restore(table, failed, marked)
    return records, kept.append_column(ROW_COLUMN, pa.array(numbers, pa.int64()))
