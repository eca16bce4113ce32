"""Request bodies to payloads by content encoding and type, and handler results to response bodies."""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any

import numpy as np
import orjson

from shipyard.errors import BadRequest, PayloadTooLarge, UnsupportedEncoding, UnsupportedMediaType

JSON = "application/json"
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def media_type(content_type: str | None) -> tuple[str, str | None]:
    """`text/plain; charset=latin-1` -> ("text/plain", "latin-1"); a missing header means JSON."""
    if not content_type:
        return JSON, None
    kind, _, rest = content_type.partition(";")
    charset = None
    for param in rest.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "charset":
            charset = value.strip().strip('"')
    return kind.strip().lower(), charset


def is_accepted(kind: str, accepted: list[str]) -> bool:
    for pattern in accepted:
        if pattern in ("*/*", kind):
            return True
        if pattern.endswith("/*") and kind.startswith(pattern[:-1]):
            return True
    return False


def is_json(kind: str) -> bool:
    return kind == JSON or kind.endswith("+json")


def decode(body: bytes, content_type: str | None, accepted: list[str]) -> Any:
    """Parsed JSON for JSON types, `str` for text/*, `bytes` for anything else."""
    kind, charset = media_type(content_type)
    if not is_accepted(kind, accepted):
        raise UnsupportedMediaType(kind, accepted)
    if is_json(kind):
        return parse_json(body)
    if kind.startswith("text/"):
        try:
            return body.decode(charset or "utf-8")
        except (LookupError, UnicodeDecodeError) as exc:
            raise BadRequest(f"request body is not valid {charset or 'utf-8'} text: {exc}") from None
    return body


_GZIP = 16 + zlib.MAX_WBITS
_WBITS = {"gzip": _GZIP, "x-gzip": _GZIP, "deflate": zlib.MAX_WBITS}


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """The body as it was before its `Content-Encoding` (gzip, deflate; several are undone last first),
    refused once it grows past `limit` bytes: a small body must not inflate into a huge one."""
    for coding in reversed([part.strip().lower() for part in encoding.split(",") if part.strip()]):
        if coding == "identity":
            continue
        wbits = _WBITS.get(coding)
        if wbits is None:
            raise UnsupportedEncoding(coding)
        if wbits == zlib.MAX_WBITS and not _has_zlib_header(body):
            wbits = -zlib.MAX_WBITS  # "deflate" means zlib, but some clients send a bare deflate stream
        body = _inflate(body, coding, wbits, limit)
    return body


def _has_zlib_header(data: bytes) -> bool:
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


def _inflate(data: bytes, coding: str, wbits: int, limit: int) -> bytes:
    out = bytearray()
    while True:  # a gzip body may hold several members, one after another
        inflater = zlib.decompressobj(wbits)
        try:
            out += inflater.decompress(data, limit + 1 - len(out))
        except zlib.error as exc:
            raise BadRequest(f"request body is not valid {coding} data (Content-Encoding: {coding}): {exc}") from None
        if len(out) > limit:
            raise PayloadTooLarge(len(out), limit, decompressed=True)
        if not inflater.eof:
            raise BadRequest(f"request body is cut short: its {coding} data (Content-Encoding: {coding}) does not end")
        data = inflater.unused_data
        if not data:
            return bytes(out)
        if wbits != _GZIP:
            raise BadRequest(f"request body has {len(data)} bytes after the end of its {coding} data")


def parse_json(body: bytes) -> Any:
    if not body:
        raise BadRequest("request body is empty; send a JSON document")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None


def encode(result: Any) -> tuple[bytes, str]:
    """The body and content type for a handler's result (a Starlette Response is sent as it is, elsewhere)."""
    if isinstance(result, bytes | bytearray | memoryview):
        return bytes(result), "application/octet-stream"
    if isinstance(result, str):
        return result.encode(), "text/plain; charset=utf-8"
    return dump_json(result), JSON


def dump_json(value: Any) -> bytes:
    try:
        return orjson.dumps(value, default=_default, option=_OPTIONS)
    except orjson.JSONEncodeError as exc:
        raise TypeError(f"the handler's result is not JSON-serialisable ({exc})") from None


def _default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()  # dtypes orjson does not serialise natively (object, float16, ...)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(type(value).__name__)
