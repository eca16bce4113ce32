"""The Open Inference Protocol's binary tensor data extension (Triton's default mode): raw tensor bytes after
the JSON.

A request whose `Inference-Header-Content-Length` header is N carries N bytes of JSON, then the raw data of
each input whose `parameters.binary_data_size` is set, in the order of `inputs`. Numbers are little-endian
and row-major; a BYTES element is a 4-byte little-endian length followed by that many bytes. Responses use
the same layout for the outputs asked for in binary.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from shipyard.errors import InvalidTensor

HEADER = "inference-header-content-length"
EXTENSION = "binary_tensor_data"
_LENGTH = struct.Struct("<I")


def split_body(body: bytes, header_length: int) -> tuple[bytes, memoryview]:
    """The JSON part and the raw tail of a binary request."""
    if header_length > len(body):
        raise InvalidTensor(
            f"the {HEADER} header says {header_length} bytes of JSON, but the body has only {len(body)} bytes"
        )
    view = memoryview(body)
    return body[:header_length], view[header_length:]


def parse_header_length(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.strip().isdigit():
        raise InvalidTensor(f"the {HEADER} header must be a whole number of bytes, got {value!r}")
    return int(value)


def decode_raw(name: str, raw: memoryview, shape: list[int], datatype: str, dtype: Any) -> np.ndarray:
    """One input tensor from its raw bytes."""
    count = math.prod(shape)
    if datatype == "BYTES":
        items = _split_bytes(name, raw)
        if len(items) != count:
            raise InvalidTensor(f"input {name!r}: shape {shape} needs {count} elements, got {len(items)}")
        array = np.empty(count, dtype=np.object_)
        array[:] = [_text(item) for item in items]
        return array.reshape(shape)
    little = np.dtype(dtype).newbyteorder("<")
    if len(raw) != count * little.itemsize:
        raise InvalidTensor(
            f"input {name!r}: shape {shape} of {datatype} needs {count * little.itemsize} bytes of binary data, "
            f"got {len(raw)}"
        )
    return np.frombuffer(bytearray(raw), dtype=little).astype(np.dtype(dtype), copy=False).reshape(shape)


def encode_raw(array: np.ndarray, datatype: str) -> bytes:
    """The raw bytes of one output tensor."""
    if datatype == "BYTES":
        parts = []
        for item in array.reshape(-1).tolist():
            data = item if isinstance(item, bytes) else str(item).encode()
            parts.append(_LENGTH.pack(len(data)) + data)
        return b"".join(parts)
    little = array.dtype.newbyteorder("<")
    return np.ascontiguousarray(array, dtype=little).tobytes()


def _split_bytes(name: str, raw: memoryview) -> list[bytes]:
    items, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidTensor(f"input {name!r}: BYTES data ends inside an element's 4-byte length")
        (size,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise InvalidTensor(f"input {name!r}: a BYTES element of {size} bytes runs past the end of its data")
        items.append(bytes(raw[offset : offset + size]))
        offset += size
    return items


def _text(item: bytes) -> str | bytes:
    """BYTES elements reach the handler as str, as in the JSON form; bytes that are not UTF-8 stay bytes."""
    try:
        return item.decode()
    except UnicodeDecodeError:
        return item
