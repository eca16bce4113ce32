"""Open Inference Protocol v2 tensors: request inputs to numpy arrays, handler results to outputs.

One input tensor becomes the payload as an ndarray of its shape; several become a dict of name -> ndarray.
When the API has a schema, inputs named after its fields are columns: each 1-D (or [n, 1]) and of one
length, and the schema check runs on their rows (for a built-in handler, one [n, features] tensor under
another name is checked column by column instead). A result that is a dict becomes one output per key;
anything else becomes one output (the handler's advertised output, else named after the requested output,
else `output-0`); asking for an output that does not exist is refused. BYTES tensors carry strings; dicts
and lists inside them are sent as JSON text.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shipyard.errors import InvalidTensor
from shipyard.serving import binary_tensors, codec

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
DEFAULT_OUTPUT = "output-0"


@dataclass(frozen=True)
class Decoded:
    """An inference request: its input arrays by name and how it wants its outputs."""

    arrays: dict[str, np.ndarray]
    wanted: list[str] = field(default_factory=list)
    """Requested output names, in order; empty means every output."""
    binary: dict[str, bool] = field(default_factory=dict)
    """Outputs whose `parameters.binary_data` was set."""
    binary_default: bool = False
    """The request's `parameters.binary_data_output`."""

    @property
    def payload(self) -> Any:
        return next(iter(self.arrays.values())) if len(self.arrays) == 1 else self.arrays

    def is_binary(self, name: str) -> bool:
        return self.binary.get(name, self.binary_default)


def decode_inputs(request: Any, tail: memoryview | None = None) -> Decoded:
    """The input arrays of an inference request; `tail` holds the raw data of binary inputs."""
    if not isinstance(request, dict):
        raise InvalidTensor(f"an inference request must be a JSON object with 'inputs', got {type(request).__name__}")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidTensor("'inputs' must be a non-empty list of tensors {name, shape, datatype, data}")
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for index, tensor in enumerate(inputs):
        name, array, used = decode_tensor(tensor, index, tail, offset)
        if name in arrays:
            raise InvalidTensor(f"input {name!r} appears twice; each input tensor needs its own name")
        arrays[name] = array
        offset += used
    if tail is not None and offset != len(tail):
        raise InvalidTensor(
            f"the body carries {len(tail)} bytes of binary tensor data, but the inputs' binary_data_size add up to "
            f"{offset}"
        )
    wanted, binary = _requested_outputs(request.get("outputs"))
    parameters = request.get("parameters")
    binary_default = isinstance(parameters, dict) and parameters.get("binary_data_output") is True
    return Decoded(arrays, wanted, binary, binary_default)


def _requested_outputs(outputs: Any) -> tuple[list[str], dict[str, bool]]:
    wanted: list[str] = []
    binary: dict[str, bool] = {}
    for output in outputs if isinstance(outputs, list) else []:
        if not isinstance(output, dict) or not output.get("name"):
            continue
        name = str(output["name"])
        wanted.append(name)
        parameters = output.get("parameters")
        if isinstance(parameters, dict) and isinstance(parameters.get("binary_data"), bool):
            binary[name] = parameters["binary_data"]
    return wanted, binary


def decode_tensor(
    tensor: Any, index: int, tail: memoryview | None = None, offset: int = 0
) -> tuple[str, np.ndarray, int]:
    """One input: its name, its array, and how many bytes of the binary tail it used."""
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
    size = _binary_size(tensor, name)
    if size is not None:
        if tail is None:
            raise InvalidTensor(
                f"input {name!r} has parameters.binary_data_size, but the request has no "
                f"{binary_tensors.HEADER} header; send the header, or the data as JSON"
            )
        if offset + size > len(tail):
            raise InvalidTensor(f"input {name!r}: binary_data_size {size} runs past the end of the body")
        raw = tail[offset : offset + size]
        return name, binary_tensors.decode_raw(name, raw, shape, datatype, DTYPES[datatype]), size
    if data is None:
        raise InvalidTensor(
            f"input {name!r}: 'data' is missing (or send it in binary with parameters.binary_data_size)"
        )
    return name, _from_json(name, data, shape, datatype), 0


def _binary_size(tensor: dict[str, Any], name: str) -> int | None:
    parameters = tensor.get("parameters")
    size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if size is None:
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidTensor(f"input {name!r}: parameters.binary_data_size must be a whole number >= 0, got {size!r}")
    return size


def _from_json(name: str, data: Any, shape: list[int], datatype: str) -> np.ndarray:
    flat = _flatten(data if isinstance(data, list) else [data])
    expected = math.prod(shape)
    if len(flat) != expected:
        raise InvalidTensor(f"input {name!r}: shape {shape} needs {expected} elements, got {len(flat)}")
    _check_kinds(name, flat, datatype)
    try:
        array = np.asarray(flat, dtype=DTYPES[datatype])
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidTensor(f"input {name!r}: data does not fit datatype {datatype}: {exc}") from None
    return array.reshape(shape)


def _json_kinds(datatype: str) -> tuple[set[type], str]:
    """The JSON element types a datatype takes, and how to say so (JSON booleans are never numbers)."""
    if datatype == "BOOL":
        return {bool}, "true or false"
    if datatype == "BYTES":
        return {str}, "strings"
    if datatype.startswith(("INT", "UINT")):
        return {int}, "whole numbers"
    return {int, float}, "numbers"


def _check_kinds(name: str, flat: list[Any], datatype: str) -> None:
    allowed, words = _JSON_KINDS[datatype]
    if set(map(type, flat)) <= allowed:  # one C-level pass over the elements
        return
    index, bad = next((i, item) for i, item in enumerate(flat) if type(item) not in allowed)
    raise InvalidTensor(
        f"input {name!r}: datatype {datatype} takes {words}, got {codec.dump_json(bad).decode()} at element {index}"
    )


_JSON_KINDS = {datatype: _json_kinds(datatype) for datatype in DTYPES}


def _flatten(data: list[Any]) -> list[Any]:
    if not any(isinstance(item, list) for item in data):
        return data
    flat: list[Any] = []
    for item in data:
        flat.extend(_flatten(item) if isinstance(item, list) else [item])
    return flat


def field_columns(arrays: dict[str, np.ndarray], fields: Collection[str]) -> dict[str, np.ndarray]:
    """The inputs named after schema fields, as 1-D columns of one length (the others are left out)."""
    columns = {}
    for name, array in arrays.items():
        if name not in fields:
            continue
        if array.ndim == 2 and array.shape[1] == 1:
            array = array.reshape(-1)
        if array.ndim != 1:
            raise InvalidTensor(
                f"input {name!r} is a schema field, so it is a column: send shape [n] (or [n, 1]), "
                f"got {list(array.shape)}"
            )
        columns[name] = array
    lengths = {len(column) for column in columns.values()}
    if len(lengths) > 1:
        shown = ", ".join(f"{name} [{len(column)}]" for name, column in columns.items())
        raise InvalidTensor(f"the column inputs must all have the same length, got {shown}")
    return columns


def matrix_records(name: str, array: np.ndarray, features: list[str]) -> list[dict[str, Any]]:
    """The rows of one [n, features] tensor (or one [features] row) as records, for the schema check."""
    matrix = array.reshape(1, -1) if array.ndim == 1 else array
    if matrix.ndim != 2 or matrix.shape[1] != len(features):
        raise InvalidTensor(
            f"input {name!r} holds the features {', '.join(features)} in that order: send shape "
            f"[n, {len(features)}], got {list(array.shape)} (or send each feature as its own [n] input)"
        )
    return [dict(zip(features, row, strict=True)) for row in matrix.tolist()]


def column_records(columns: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Rows of columns as records, for the schema check."""
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*(c.tolist() for c in columns.values()), strict=True)]


@dataclass
class Outputs:
    """Output tensors as JSON, and the raw bytes of those sent in binary (in the same order)."""

    tensors: list[dict[str, Any]]
    blobs: list[bytes]


def encode_outputs(
    result: Any,
    wanted: list[str],
    default_name: str = DEFAULT_OUTPUT,
    is_binary: Any = None,
    known: Collection[str] = (),
) -> Outputs:
    """The result as output tensors. A requested output the result does not have is an InvalidTensor; `known`
    are the outputs the handler advertises (a result that is no dict is then `default_name`, never renamed)."""
    if isinstance(result, dict):
        named = {str(key): value for key, value in result.items()}
        _check_requested(wanted, list(named))
        pairs = [(name, named[name]) for name in wanted or named]
    elif known:
        _check_requested(wanted, [default_name])
        pairs = [(default_name, result)]
    else:
        if len(wanted) > 1:
            raise InvalidTensor(
                f"the model answers with one output, so at most one can be requested, got {', '.join(wanted)}"
            )
        pairs = [(wanted[0] if wanted else default_name, result)]
    outputs = Outputs([], [])
    for name, value in pairs:
        binary = bool(is_binary(name)) if is_binary is not None else False
        tensor, blob = encode_tensor(name, value, binary)
        outputs.tensors.append(tensor)
        if blob is not None:
            outputs.blobs.append(blob)
    return outputs


def _check_requested(wanted: list[str], available: list[str]) -> None:
    unknown = [name for name in wanted if name not in available]
    if unknown:
        raise InvalidTensor(
            f"requested output{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
            f"{'do' if len(unknown) > 1 else 'does'} not exist; this model's outputs are: {', '.join(available)}"
        )


def encode_tensor(name: str, value: Any, binary: bool = False) -> tuple[dict[str, Any], bytes | None]:
    """One output tensor, with its data as JSON or, when `binary`, as raw bytes beside it."""
    array = value if isinstance(value, np.ndarray) else np.asarray(value)
    shape = list(array.shape)
    if array.dtype.kind in "USO":
        elements = [_element(name, item) for item in array.reshape(-1).tolist()]
        if binary:
            raw = binary_tensors.encode_raw(np.asarray(elements, dtype=np.object_), "BYTES")
            return _binary_tensor(name, shape, "BYTES", raw), raw
        data = [_json_text(name, item) for item in elements]
        return {"name": name, "shape": shape, "datatype": "BYTES", "data": data}, None
    datatype = datatype_of(array.dtype)
    if datatype is None:
        raise TypeError(f"output {name!r} has dtype {array.dtype}, which has no Open Inference Protocol type")
    if binary:
        raw = binary_tensors.encode_raw(array, datatype)
        return _binary_tensor(name, shape, datatype, raw), raw
    return {"name": name, "shape": shape, "datatype": datatype, "data": array.reshape(-1).tolist()}, None


def datatype_of(dtype: np.dtype[Any]) -> str | None:
    """The OIP datatype of a numpy dtype: BYTES for strings and objects, None when there is none."""
    if dtype.kind in "USO":
        return "BYTES"
    return _NAMES.get(dtype)


def _binary_tensor(name: str, shape: list[int], datatype: str, raw: bytes) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "parameters": {"binary_data_size": len(raw)}}


def _element(name: str, item: Any) -> str | bytes:
    """A BYTES element: text as it is, anything else (a dict, a list, a number, None) as JSON text."""
    if isinstance(item, str | bytes):
        return item
    try:
        return codec.dump_json(item).decode()
    except TypeError as exc:
        raise TypeError(f"output {name!r} holds a {type(item).__name__} that cannot be sent as text: {exc}") from None


def _json_text(name: str, item: str | bytes) -> str:
    if isinstance(item, str):
        return item
    try:
        return item.decode()
    except UnicodeDecodeError:
        raise ValueError(
            f"output {name!r} holds bytes that are not UTF-8 text; ask for it in binary (parameters.binary_data)"
        ) from None
