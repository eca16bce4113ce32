from __future__ import annotations

import numpy as np
import pytest

from shipyard.errors import BadRequest, UnsupportedMediaType
from shipyard.serving.codec import decode, encode, media_type


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
