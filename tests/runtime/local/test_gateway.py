"""The gateway as an ASGI app against real sockets: retry after a silent failure, 503 with Retry-After, ids."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

from shipyard.runtime.local.admission import APIRoute
from shipyard.runtime.local.gateway import Gateway, RouteTable
from shipyard.runtime.local.router import Splitter
from shipyard.spec.models import TrafficSplitter

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.close()  # read the request, answer nothing


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            writer.close()
            return
        length = next(int(line[15:]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
        body = await reader.readexactly(length)
        request_id = next(line[14:] for line in head.split(b"\r\n") if line.lower().startswith(b"x-request-id:"))
        reply = b'{"ok":' + body + b"}"
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-request-id: "
            + request_id.strip()
            + b"\r\ncontent-length: "
            + str(len(reply)).encode()
            + b"\r\n\r\n"
            + reply
        )


async def serve(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def shut(gateway: Gateway, *servers: asyncio.Server) -> None:
    gateway.update(RouteTable())  # closes the pooled connections
    await asyncio.sleep(0.05)
    for server in servers:
        server.close()
        await server.wait_closed()


async def call(
    gateway: Gateway, path: str, body: bytes, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> dict[str, Any]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), *headers],
    }
    await gateway(scope, receive, send)
    return {"status": sent[0]["status"], "headers": dict(sent[0]["headers"]), "body": sent[1]["body"]}


def test_a_replica_that_answers_nothing_is_retried_on_another() -> None:
    async def scenario() -> None:
        silent, silent_url = await serve(hang_up)
        good, good_url = await serve(answer)
        gateway = Gateway(random.Random(1))
        gateway.update(RouteTable({"api": APIRoute("api", 1, 10, 5, {"a": silent_url, "b": good_url})}))
        for n in range(6):  # least-in-flight ties go either way; every request must still succeed
            reply = await call(gateway, "/api/predict", str(n).encode(), ((b"x-request-id", f"id-{n}".encode()),))
            assert (reply["status"], reply["body"]) == (200, b'{"ok":' + str(n).encode() + b"}")
            assert reply["headers"][b"x-request-id"] == f"id-{n}".encode()
        await shut(gateway, silent, good)

    asyncio.run(scenario())


def test_answers_503_with_retry_after_when_nothing_can_serve() -> None:
    async def scenario() -> None:
        gateway = Gateway()
        gateway.update(RouteTable({"api": APIRoute("api", 1, 10, 5, {})}))
        reply = await call(gateway, "/api", b"{}")
        assert reply["status"] == 503 and reply["headers"][b"retry-after"] == b"1"
        assert b"no ready replica" in reply["body"] and b"x-request-id" in reply["headers"]
        missing = await call(gateway, "/other", b"{}")
        assert missing["status"] == 404 and b"deployed: api" in missing["body"]

    asyncio.run(scenario())


def test_splitter_routes_by_weight_and_counts_under_its_own_name() -> None:
    async def scenario() -> None:
        server, url = await serve(answer)
        spec = TrafficSplitter.model_validate(
            {
                "kind": "TrafficSplitter",
                "name": "front",
                "apis": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50}],
            }
        )
        gateway = Gateway(random.Random(3))
        routes = {name: APIRoute(name, 4, 10, 5, {f"{name}-0": url}) for name in ("a", "b")}
        gateway.update(RouteTable(routes, {"front": Splitter.of(spec)}))
        for _ in range(40):
            assert (await call(gateway, "/front", b"1"))["status"] == 200
        report = gateway.update(RouteTable(routes, {"front": Splitter.of(spec)}))
        counts = {name: report.apis[name].last_minute.requests for name in ("a", "b", "front")}
        assert counts["front"] == 40 and counts["a"] + counts["b"] == 40 and min(counts["a"], counts["b"]) > 5
        await shut(gateway, server)

    asyncio.run(scenario())
