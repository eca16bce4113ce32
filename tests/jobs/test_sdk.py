"""The SDK over a daemon raises the classes the daemon raised (rebuilt from the error's type on the wire)."""

from __future__ import annotations

import httpx
import pytest

from shipyard.client import RemoteError, _remote_error
from shipyard.errors import BadRequest, ConfigError
from shipyard.jobs.errors import BadInput, JobNotFound


def _response(status: int, kind: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"type": kind, "message": message}})


@pytest.mark.parametrize(
    ("status", "kind", "cls"),
    [
        (400, "BadInput", BadInput),
        (404, "JobNotFound", JobNotFound),
        (400, "BadRequest", ConfigError),  # a malformed request stays a usage error (exit code 2)
        (500, "SomethingNew", RemoteError),
    ],
)
def test_a_daemon_error_comes_back_as_its_own_class(status: int, kind: str, cls: type) -> None:
    error = _remote_error(_response(status, kind, f"{kind} happened; do this"))
    assert type(error) is cls
    assert (error.message, error.status_code) == (f"{kind} happened; do this", status)
    assert not isinstance(error, BadRequest)
