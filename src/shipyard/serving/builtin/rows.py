"""Turn the payload shapes users send to tabular models into rows, and predictions back into their shape.

Accepted payloads: one record `{"a": 1, "b": 2}` or one row `[1, 2]` (answered `{"prediction": value}`),
a list of records or rows, or `{"instances": rows-or-records}` (answered `{"predictions": [...]}`), or from
the v2 protocol an array of rows or a dict of feature columns (answered with an array).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from shipyard.errors import BadRequest


class Form(StrEnum):
    single = "single"  #: one row in, {"prediction": value} out
    many = "many"  #: a list of rows in, {"predictions": [...]} out
    instances = "instances"  #: {"instances": ...} in, {"predictions": [...]} out
    array = "array"  #: an ndarray in (OIP v2), an ndarray out


@dataclass(frozen=True)
class Rows:
    matrix: list[list[Any]] | np.ndarray
    form: Form

    def __len__(self) -> int:
        return len(self.matrix)


def to_rows(payload: Any, features: Sequence[str] | None) -> Rows:
    if isinstance(payload, np.ndarray):
        matrix = payload.reshape(1, -1) if payload.ndim == 1 else payload
        if matrix.ndim != 2:
            raise BadRequest(f"expected a 1-D or 2-D tensor of features, got shape {list(payload.shape)}")
        return Rows(matrix, Form.array)
    if isinstance(payload, dict) and payload and all(isinstance(v, np.ndarray) for v in payload.values()):
        return Rows(_column_matrix(payload, features), Form.array)
    if isinstance(payload, dict) and "instances" in payload:
        inner = to_rows(payload["instances"], features)
        if inner.form is Form.single:
            raise BadRequest('"instances" must be a list of rows or records, got a single value')
        return Rows(inner.matrix, Form.instances)
    if isinstance(payload, dict):
        return Rows([_record_row(payload, features, None)], Form.single)
    if isinstance(payload, list) and payload and all(isinstance(item, dict) for item in payload):
        return Rows([_record_row(item, features, i) for i, item in enumerate(payload)], Form.many)
    if isinstance(payload, list) and payload and all(isinstance(item, list) for item in payload):
        return Rows(payload, Form.many)
    if isinstance(payload, list) and payload and not any(isinstance(item, dict | list) for item in payload):
        return Rows([payload], Form.single)
    raise BadRequest(
        'expected a record {"feature": value, ...}, a list of records, a row [v1, v2, ...], a list of rows, '
        f'or {{"instances": [...]}}; got {type(payload).__name__}'
    )


def _column_matrix(columns: dict[str, np.ndarray], features: Sequence[str] | None) -> np.ndarray:
    """OIP v2 inputs named after the features, one 1-D tensor per feature, as a matrix in feature order."""
    if not features:
        raise BadRequest(
            "the inputs are named columns, but this model's feature order is unknown; send one [n, features] "
            "tensor or declare the order with a schema or config.features"
        )
    missing = [name for name in features if name not in columns]
    if missing:
        raise BadRequest(f"the inputs lack the feature(s) {', '.join(missing)}; expected {', '.join(features)}")
    chosen = [columns[name].reshape(-1) for name in features]
    if len({len(column) for column in chosen}) > 1:
        raise BadRequest(f"the feature columns {', '.join(features)} must all have the same length")
    return np.column_stack(chosen)


def check_width(rows: Rows, width: int | None) -> None:
    """Every row must hold `width` values (the estimator's n_features_in_), or the payload is refused alone."""
    if width is None:
        return
    matrix = rows.matrix
    if isinstance(matrix, np.ndarray):
        if matrix.ndim == 2 and matrix.shape[1] != width:
            raise BadRequest(f"each row needs {width} feature values, got {matrix.shape[1]}")
        return
    for index, row in enumerate(matrix):
        count = len(row) if isinstance(row, list | tuple) else 1
        if count != width:
            where = f"row {index}" if len(matrix) > 1 else "the row"
            raise BadRequest(f"{where} has {count} value{'s' if count != 1 else ''}; this model needs {width} features")


def _record_row(record: dict[str, Any], features: Sequence[str] | None, index: int | None) -> list[Any]:
    where = f"record {index}" if index is not None else "record"
    if not features:
        raise BadRequest(
            f"{where} has named fields, but this model's feature order is unknown; send rows (lists of values) "
            "or declare the order with a schema or config.features"
        )
    missing = [name for name in features if name not in record]
    if missing:
        raise BadRequest(f"{where} lacks the feature(s) {', '.join(missing)}; expected {', '.join(features)}")
    return [record[name] for name in features]


def from_predictions(predictions: Any, rows: Rows) -> Any:
    if rows.form is Form.array:
        return np.asarray(predictions)
    values = predictions.tolist() if isinstance(predictions, np.ndarray) else list(predictions)
    if rows.form is Form.single:
        return {"prediction": values[0]}
    return {"predictions": values}


def stack(parts: list[Rows]) -> np.ndarray | list[list[Any]]:
    """All rows of several payloads as one matrix, for a single model call."""
    if all(isinstance(part.matrix, np.ndarray) for part in parts):
        return np.concatenate([np.asarray(part.matrix) for part in parts])
    return [list(row) for part in parts for row in part.matrix]
