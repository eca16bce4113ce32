from __future__ import annotations

import gzip
import re
import zlib

import numpy as np
import pytest

from shipyard.errors import BadRequest, PayloadTooLarge, UnsupportedEncoding, UnsupportedMediaType
from shipyard.serving.codec import decode, decompress, encode, media_type


def test_payload_by_content_type() -> None:
    anything = ["*/*"]
    assert decode(b'{"a": 1}', "application/json", anything) == {"a": 1}
    assert decode(b'{"a": 1}', None, anything) == {"a": 1}
    assert decode(b"[1]", "application/vnd.api+json", anything) == [1]
    assert decode("é".encode("latin-1"), "text/plain; charset=latin-1", anything) == "é"
    assert decode(b"\x00", "image/png", anything) == b"\x00"


def test_refusals() -> None:
    with pytest.raises(UnsupportedMediaType, match="'text/csv' is not accepted by this API; send one of: application"):
        decode(b"a,b", "text/csv", ["application/json", "image/*"])
    with pytest.raises(BadRequest, match="not valid JSON"):
        decode(b"{", "application/json", ["*/*"])
    with pytest.raises(BadRequest, match="empty"):
        decode(b"", "application/json", ["*/*"])
    with pytest.raises(BadRequest, match="not valid utf-8 text"):
        decode(b"\xff", "text/plain", ["text/*"])
    assert decode(b"x", "image/png", ["image/*"]) == b"x"


def test_encoding_results() -> None:
    assert encode({"a": np.float32(1.5), "b": np.arange(3)}) == (b'{"a":1.5,"b":[0,1,2]}', "application/json")
    assert encode(np.array(["x"], dtype=object)) == (b'["x"]', "application/json")
    assert encode("hi") == (b"hi", "text/plain; charset=utf-8")
    assert encode(b"\x01") == (b"\x01", "application/octet-stream")
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        encode(object())
    assert media_type('Text/Plain; Charset="utf-8"') == ("text/plain", "utf-8")


def test_gzip_and_deflate_bodies_are_decompressed() -> None:
    body = b'{"x": [1, 2, 3]}'
    assert decompress(gzip.compress(body), "gzip", 100) == body
    assert decompress(gzip.compress(body[:5]) + gzip.compress(body[5:]), "x-gzip", 100) == body  # two members
    assert decompress(zlib.compress(body), "deflate", 100) == body
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert decompress(raw.compress(body) + raw.flush(), "Deflate", 100) == body  # a bare deflate stream
    assert decompress(gzip.compress(zlib.compress(body)), "deflate, gzip", 100) == body
    assert decompress(body, "identity", 100) == body


def test_a_body_that_inflates_past_the_limit_is_refused_without_inflating_it_all() -> None:
    bomb = gzip.compress(b"0" * 5_000_000)  # about 5 KB that would become 5 MB
    with pytest.raises(
        PayloadTooLarge, match="request body decompresses to more than this API's max_body_size of 1000"
    ):
        decompress(bomb, "gzip", 1000)
    assert len(decompress(gzip.compress(b"0" * 1000), "gzip", 1000)) == 1000  # exactly the limit is fine


@pytest.mark.parametrize(
    ("body", "encoding", "error", "message"),
    [
        (b'{"x": 1}', "gzip", BadRequest, "request body is not valid gzip data (Content-Encoding: gzip)"),
        (gzip.compress(b'{"x": 1}')[:-12], "gzip", BadRequest, "request body is cut short: its gzip data"),
        (zlib.compress(b"{}") + b"junk", "deflate", BadRequest, "has 4 bytes after the end of its deflate data"),
        (b"{}", "br", UnsupportedEncoding, "content encoding 'br' is not supported; send the body as it is, or"),
    ],
)
def test_bodies_that_do_not_decompress(body: bytes, encoding: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        decompress(body, encoding, 1000)
