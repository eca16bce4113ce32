"""The runtime's errors come back through the SDK as their own classes, in a process that loaded only the SDK."""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHECK = textwrap.dedent(
    """
    import sys

    import httpx

    from shipyard.client import _remote_error
    from shipyard.errors import NotFound

    assert "shipyard.runtime.local.state" not in sys.modules  # as in a script that only uses the SDK

    def error(status, kind):
        return _remote_error(httpx.Response(status, json={"error": {"type": kind, "message": "m"}}))

    missing = error(404, "APINotFound")
    assert isinstance(missing, NotFound), type(missing)
    for status, kind in [(409, "APIInUse"), (409, "APIOwnedElsewhere"), (504, "GatewayTimeout"), (502, "BadGateway")]:
        found = error(status, kind)
        assert type(found).__name__ == kind and found.status_code == status, (kind, type(found))
    print("ok")
    """
)


def test_runtime_errors_are_their_own_classes_in_the_sdk() -> None:
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
