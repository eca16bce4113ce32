"""The control API's job bodies: each field of its type and every local path absolute, or a clear 400."""

from __future__ import annotations

from typing import Any

import pytest

from shipyard.errors import BadRequest, ShipyardError
from shipyard.jobs.errors import BadJobOption
from shipyard.runtime.local.control_jobs import _retry_timeout, job_request

BODY = {"api": "double", "project": "/p", "inputs": ["/data/in.csv"], "output": "/out"}


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"batch_size": "abc"}, BadJobOption, "job option batch_size (--batch-size) is str 'abc'; it must be a whole"),
        ({"workers": 1.5}, BadJobOption, "job option workers (--workers) is float 1.5; it must be a whole number"),
        ({"max_retries": True}, BadJobOption, "job option max_retries (--max-retries) is bool True; it must be"),
        ({"timeout": "1h"}, BadJobOption, "job option timeout (--timeout) is str '1h'; it must be a number of"),
        ({"config": [1]}, BadJobOption, "job option config (--config) is list [1]; it must be a mapping"),
        ({"inputs": "/tmp/in.csv"}, BadJobOption, "job option inputs is str '/tmp/in.csv'; it must be a list"),
        ({"inputs": [1]}, BadJobOption, "job option inputs is list [1]; it must be a list of paths"),
        ({"format": "xml"}, BadJobOption, "job option format is str 'xml'; it must be one of parquet, jsonl, csv"),
        ({"items": {"a": 1}}, BadJobOption, "job option items is dict {'a': 1}; it must be a list of records"),
        ({"inputs": ["data/"]}, BadRequest, "'inputs' holds the relative path 'data/'; send absolute paths"),
        ({"output": "scored"}, BadRequest, "'output' holds the relative path 'scored'; send absolute paths"),
        ({"project": "."}, BadRequest, "'project' holds the relative path '.'; send absolute paths"),
        ({"project": None}, BadRequest, "a job needs an absolute project path in 'project', got None"),
        ({"color": "red"}, BadRequest, "unknown job field(s) color; known: api, batch_size"),
    ],
)
def test_a_bad_job_body_is_a_400_naming_the_field(change: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error) as caught:
        job_request(BODY | change)
    assert caught.value.status_code == 400 and caught.value.message.startswith(message), caught.value.message
    assert "\n" not in caught.value.message


def test_a_good_job_body_keeps_urls_and_absolute_paths() -> None:
    request = job_request(BODY | {"inputs": ["s3://b/day=*/x.parquet", "/data/a.csv"], "batch_size": 5})
    assert (list(request.inputs), request.batch_size) == (["s3://b/day=*/x.parquet", "/data/a.csv"], 5)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(b"", None), (b"{}", None), (b'{"timeout": 60}', 60.0), (b'{"timeout": "1h"}', BadRequest), (b"[1]", BadRequest)],
)
def test_a_retry_body_may_set_a_new_timeout(raw: bytes, expected: float | type | None) -> None:
    if isinstance(expected, type):
        with pytest.raises(ShipyardError):
            _retry_timeout(raw)
        return
    assert _retry_timeout(raw) == expected
