"""Turn the payload shapes users send to tabular models into rows, and predictions back into their shape.

Accepted payloads: one record `{"a": 1, "b": 2}` or one row `[1, 2]` (answered `{"prediction": value}`),
a list of records or rows, or `{"instances": rows-or-records}` (answered `{"predictions": [...]}`), or an
array from the v2 protocol (answered with an array).
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
