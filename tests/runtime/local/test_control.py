"""The control API's errors keep the JSON form whatever goes wrong: unknown routes, wrong methods, failures."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from shipyard.runtime.local.control import Context, build_app
from shipyard.runtime.local.daemon import Daemon, Options, release_finder
from shipyard.runtime.local.gateway import Gateway
from shipyard.runtime.local.home import Home
from shipyard.runtime.local.supervisor import Supervisor
from shipyard.settings import get_settings
from shipyard.store import create_store_engine, migrate, write_transaction


class Caller:
    """Requests to the control app's ASGI callable, with the token unless told otherwise."""

    def __init__(self, context: Context) -> None:
        self.app = build_app(context)
        self.token = context.token

    def request(self, method: str, path: str, token: str | None = None) -> httpx.Response:
        async def send() -> httpx.Response:
            headers = {"authorization": f"Bearer {token or self.token}"}
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://control") as client:
                return await client.request(method, path, headers=headers)

        return asyncio.run(send())

    def get(self, path: str, **options: Any) -> httpx.Response:
        return self.request("GET", path, **options)


@pytest.fixture
def control(tmp_path: Path) -> Iterator[tuple[Caller, Context]]:
    home = Home(tmp_path / "home")
    engine = create_store_engine(f"sqlite:///{tmp_path / 'shipyard.db'}")
    migrate(engine)
    daemon = Daemon(engine, Supervisor(release_finder(engine), home.logs), Gateway().update, home, Options())
    context = Context(engine, daemon, home, home.token(), "http://c", "http://g", 0.0, get_settings())
    yield Caller(context), context
    engine.dispose()


def test_an_unknown_route_or_method_answers_in_the_json_error_form(control: tuple[Caller, Context]) -> None:
    client, _ = control
    missing = client.get("/v1/nope")
    assert missing.status_code == 404
    assert (
        missing.json()["error"]["type"] == "NotFound" and "no route GET /v1/nope" in missing.json()["error"]["message"]
    )
    wrong = client.request("PUT", "/v1/apis")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET, HEAD"
    assert wrong.json()["error"] == {
        "type": "MethodNotAllowed",
        "message": "the control API does not answer PUT /v1/apis; it takes GET, HEAD there",
    }
    assert client.get("/v1/nope", token="wrong").status_code == 401  # the token first


def test_an_unexpected_failure_is_a_json_500_naming_the_daemon_log(
    control: tuple[Caller, Context], caplog: pytest.LogCaptureFixture
) -> None:
    client, context = control
    with write_transaction(context.engine) as connection:
        connection.execute(text("DROP TABLE deployments"))  # the store is broken under the daemon
    caplog.set_level(logging.ERROR, logger="shipyard.control")
    failed = client.get("/v1/apis")
    assert failed.status_code == 500
    error = failed.json()["error"]
    assert error["type"] == "InternalError"
    assert "GET /v1/apis (OperationalError: " in error["message"]
    assert error["message"].endswith(f"the traceback is in its log, {context.home.daemon_log}")
    [record] = caplog.records
    assert record.exc_info is not None and "control API request GET /v1/apis failed" in record.getMessage()
