"""One Arrow schema over tables whose columns vary: union of the columns, each at the widest type seen.

Rows arrive in pieces (a CSV block, 65,536 JSON lines, a file, a batch's output part), and a column's
type may differ between pieces: ints in one, floats or text in the next, nothing but nulls in a third.
These pure functions choose one schema for all of them and cast each piece to it:

    null + T -> T        int + float -> float        any other clash -> string (JSON text for non-strings)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from shipyard.spec import BatchAPI

_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError)
_DECLARED = {"float": pa.float64(), "int": pa.int64(), "str": pa.string(), "bool": pa.bool_()}


def declared_types(api: BatchAPI) -> dict[str, pa.DataType]:
    """The Arrow type of every field the API's schema declares (none without a schema)."""
    if api.input_schema is None:
        return {}
    return {name: _DECLARED[field.type.value] for name, field in api.input_schema.fields.items()}


def describe_type(kind: pa.DataType) -> str:
    """A type in the schema's own words where it has one (`int`, `float`, ...), else Arrow's."""
    for word, declared in _DECLARED.items():
        if kind == declared:
            return {"str": "a string", "int": "an int", "float": "a float", "bool": "a bool"}[word]
    return str(kind)


def unify(schemas: Iterable[pa.Schema]) -> pa.Schema:
    """Every column of any schema, in the order first seen, at the widest of its types."""
    fields: dict[str, pa.DataType] = {}
    for schema in schemas:
        for field in schema:
            seen = fields.get(field.name)
            fields[field.name] = field.type if seen is None else wider(seen, field.type)
    return pa.schema(list(fields.items()))


def wider(first: pa.DataType, second: pa.DataType) -> pa.DataType:
    if first == second or pa.types.is_null(second):
        return first
    if pa.types.is_null(first):
        return second
    try:
        merged = pa.unify_schemas([pa.schema([("f", first)]), pa.schema([("f", second)])], promote_options="permissive")
    except _ARROW_ERRORS:
        return pa.string()
    kind = merged.field("f").type
    return pa.string() if _is_lossy(first, second, kind) else kind


def _is_lossy(first: pa.DataType, second: pa.DataType, merged: pa.DataType) -> bool:
    """Arrow merges bool with numbers and numbers with decimals in ways that change values: use text instead."""
    kinds = (first, second)
    return any(pa.types.is_boolean(kind) for kind in kinds) and not pa.types.is_boolean(merged)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with exactly `schema`'s columns, in its order: missing ones as nulls, the others cast."""
    if table.schema == schema:
        return table
    columns = [
        cast(table.column(field.name), field.type)
        if field.name in table.column_names
        else pa.nulls(table.num_rows, field.type)
        for field in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def cast(column: pa.ChunkedArray | pa.Array, kind: pa.DataType) -> Any:
    """A column at a wider type; text when Arrow has no cast (a record or a list becomes its JSON)."""
    if column.type == kind:
        return column
    if pa.types.is_floating(kind) and pa.types.is_integer(column.type):
        return pc.cast(column, kind, safe=False)  # as float as any float column: huge ints round
    try:
        return pc.cast(column, kind)
    except _ARROW_ERRORS:
        if not pa.types.is_string(kind):
            raise
        return pa.array([as_text(value) for value in column.to_pylist()], pa.string())


def as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY, default=str).decode()


def column_of(values: Sequence[Any], declared: pa.DataType | None = None) -> pa.Array:
    """Python values as one Arrow column: Arrow's inferred type, text when they mix kinds, then the declared
    type when there is one (raises the Arrow error when a value does not convert; see `misfits.convert_values`)."""
    try:
        array = pa.array(values)
    except _ARROW_ERRORS:
        array = pa.array([as_text(value) for value in values], pa.string())
    if declared is not None and array.type != declared:
        array = pc.cast(array, declared)
    return array


def same_schema(tables: Sequence[pa.Table | pa.RecordBatch]) -> bool:
    first = tables[0].schema
    return all(table.schema == first for table in tables[1:])


def conformed(tables: Sequence[pa.Table], schema: pa.Schema | None = None) -> list[pa.Table]:
    """The tables cast to one schema (`unify` of theirs unless given)."""
    target = schema if schema is not None else unify(table.schema for table in tables)
    return [conform(table, target) for table in tables]


def field_types(schema: pa.Schema) -> Mapping[str, pa.DataType]:
    return {field.name: field.type for field in schema}
