"""Open Inference Protocol v2 tensors: request inputs to numpy arrays, handler results to outputs.

One input tensor becomes the payload as an ndarray of its shape; several become a dict of name -> ndarray.
A result that is a dict becomes one output per key; anything else becomes one output (named after the
first requested output, else `output-0`). BYTES tensors carry strings.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from shipyard.errors import InvalidTensor

DTYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}
_NAMES = {np.dtype(dtype): name for name, dtype in DTYPES.items() if name != "BYTES"}


def decode_inputs(request: Any) -> tuple[Any, list[str]]:
    """The handler payload for an inference request, and the names of the outputs it asked for."""
    if not isinstance(request, dict):
        raise InvalidTensor(f"an inference request must be a JSON object with 'inputs', got {type(request).__name__}")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidTensor("'inputs' must be a non-empty list of tensors {name, shape, datatype, data}")
    arrays = {}
    for index, tensor in enumerate(inputs):
        name, array = decode_tensor(tensor, index)
        if name in arrays:
            raise InvalidTensor(f"input {name!r} appears twice; each input tensor needs its own name")
        arrays[name] = array
    wanted = [str(o["name"]) for o in request.get("outputs") or [] if isinstance(o, dict) and o.get("name")]
    payload = next(iter(arrays.values())) if len(arrays) == 1 else arrays
    return payload, wanted


def decode_tensor(tensor: Any, index: int) -> tuple[str, np.ndarray]:
    if not isinstance(tensor, dict):
        raise InvalidTensor(f"inputs[{index}] must be an object {{name, shape, datatype, data}}")
    name = tensor.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidTensor(f"inputs[{index}].name must be a non-empty string, got {name!r}")
    shape, datatype, data = tensor.get("shape"), tensor.get("datatype"), tensor.get("data")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise InvalidTensor(f"input {name!r}: shape must be a list of whole numbers >= 0, got {shape!r}")
    if datatype not in DTYPES:
        raise InvalidTensor(f"input {name!r}: datatype must be one of {', '.join(DTYPES)}, got {datatype!r}")
    if data is None:
        raise InvalidTensor(f"input {name!r}: 'data' is missing (binary tensor data is not supported)")
    flat = _flatten(data if isinstance(data, list) else [data])
    expected = math.prod(shape)
    if len(flat) != expected:
        raise InvalidTensor(f"input {name!r}: shape {shape} needs {expected} elements, got {len(flat)}")
    try:
        array = np.asarray(flat, dtype=DTYPES[datatype])
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidTensor(f"input {name!r}: data does not fit datatype {datatype}: {exc}") from None
    return name, array.reshape(shape)


def _flatten(data: list[Any]) -> list[Any]:
    if not any(isinstance(item, list) for item in data):
        return data
    flat: list[Any] = []
    for item in data:
        flat.extend(_flatten(item) if isinstance(item, list) else [item])
    return flat


def encode_outputs(result: Any, wanted: list[str]) -> list[dict[str, Any]]:
    if isinstance(result, dict):
        named = {str(key): value for key, value in result.items()}
        names = [n for n in wanted if n in named] or list(named)
        return [encode_tensor(name, named[name]) for name in names]
    return [encode_tensor(wanted[0] if wanted else "output-0", result)]


def encode_tensor(name: str, value: Any) -> dict[str, Any]:
    array = value if isinstance(value, np.ndarray) else np.asarray(value)
    if array.dtype.kind in "USO":
        data = [item.decode() if isinstance(item, bytes) else str(item) for item in array.reshape(-1).tolist()]
        return {"name": name, "shape": list(array.shape), "datatype": "BYTES", "data": data}
    datatype = _NAMES.get(array.dtype)
    if datatype is None:
        raise TypeError(f"output {name!r} has dtype {array.dtype}, which has no Open Inference Protocol type")
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": array.reshape(-1).tolist()}
