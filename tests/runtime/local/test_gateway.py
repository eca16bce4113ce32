"""The gateway as an ASGI app against real sockets: when a retry is safe, admission, body limits, ids, zero."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from shipyard.runtime.local.admission import APIRoute
from shipyard.runtime.local.gateway import Gateway, RouteTable
from shipyard.runtime.local.router import Splitter
from shipyard.spec.models import TrafficSplitter
from tests.support import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Backend:
    """A stand-in replica on a real socket: counts what reaches it and how many it holds at once."""

    delay: float = 0.0
    delays: dict[bytes, float] = field(default_factory=dict)
    """Per body, a delay other than `delay`."""
    seen: list[bytes] = field(default_factory=list)
    connections: int = 0
    busy: int = 0
    most_busy: int = 0

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()
                return
            body = await reader.readexactly(_header(head, b"content-length", int))
            self.seen.append(body)
            self.busy += 1
            self.most_busy = max(self.most_busy, self.busy)
            await asyncio.sleep(self.delays.get(body, self.delay))
            self.busy -= 1
            reply = b'{"ok":' + body + b"}"
            request_id = _header(head, b"x-request-id", bytes)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-request-id: "
                + request_id
                + b"\r\ncontent-length: "
                + str(len(reply)).encode()
                + b"\r\n\r\n"
                + reply
            )

    async def read_then_hang_up(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Reads the whole request, then closes without a word: as a replica whose handler calls os._exit."""
        head = await reader.readuntil(b"\r\n\r\n")
        self.seen.append(await reader.readexactly(_header(head, b"content-length", int)))
        writer.close()

    async def reset_unread(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Resets the connection without reading it: as a replica whose process is gone."""
        self.connections += 1
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()


def _header(head: bytes, name: bytes, kind: Any) -> Any:
    for line in head.split(b"\r\n"):
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return kind(value.strip())
    raise AssertionError(f"no {name!r} header in {head!r}")


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


def route(
    replicas: dict[str, str], *, limit: int = 1, queue: int = 10, timeout: float = 5, **options: Any
) -> RouteTable:
    return RouteTable({"api": APIRoute("api", limit, queue, timeout, replicas, **options)})


async def call(
    gateway: Gateway,
    path: str,
    body: bytes,
    headers: tuple[tuple[bytes, bytes], ...] = (),
    chunks: tuple[bytes, ...] | None = None,
    leave: asyncio.Event | None = None,
) -> dict[str, Any]:
    """One request through the gateway's ASGI callable; `leave` makes the client disconnect when set."""
    sent: list[dict[str, Any]] = []
    parts = list(chunks) if chunks is not None else [body]

    async def receive() -> dict[str, Any]:
        if parts:
            part = parts.pop(0)
            return {"type": "http.request", "body": part, "more_body": bool(parts)}
        if leave is None:
            await asyncio.Event().wait()
        else:
            await leave.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    length = () if chunks is not None else ((b"content-length", str(len(body)).encode()),)
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), *length, *headers],
    }
    await gateway(scope, receive, send)
    if not sent:
        return {"status": None}
    return {"status": sent[0]["status"], "headers": dict(sent[0]["headers"]), "body": sent[1]["body"]}


def test_a_request_the_replica_read_is_never_sent_to_a_second_replica() -> None:
    async def scenario() -> None:
        fatal, good = Backend(), Backend()
        fatal_server, fatal_url = await serve(fatal.read_then_hang_up)
        good_server, good_url = await serve(good.answer)
        gateway = Gateway(random.Random(1))
        gateway.update(route({"fatal": fatal_url, "good": good_url}))
        statuses = []
        for n in range(8):
            reply = await call(gateway, "/api/predict", str(n).encode(), ((b"x-request-id", f"id-{n}".encode()),))
            statuses.append(reply["status"])
            assert reply["headers"][b"x-request-id"] == f"id-{n}".encode()
        assert len(fatal.seen) + len(good.seen) == 8  # each request reached exactly one replica
        assert not set(fatal.seen) & set(good.seen)
        assert statuses.count(502) == len(fatal.seen) > 0
        assert statuses.count(200) == len(good.seen) > 0
        await shut(gateway, fatal_server, good_server)

    asyncio.run(scenario())


def test_a_request_reset_unread_is_retried_once_on_another_replica() -> None:
    async def scenario() -> None:
        gone, good = Backend(), Backend()
        gone_server, gone_url = await serve(gone.reset_unread)
        good_server, good_url = await serve(good.answer)
        gateway = Gateway(random.Random(2))
        gateway.update(route({"gone": gone_url, "good": good_url}))
        for n in range(6):
            reply = await call(gateway, "/api", str(n).encode())
            assert (reply["status"], reply["body"]) == (200, b'{"ok":' + str(n).encode() + b"}")
        assert gone.connections > 0 and len(good.seen) == 6
        await shut(gateway, gone_server, good_server)

    asyncio.run(scenario())


def test_a_refused_replica_leaves_the_rotation_and_a_queued_retry_never_goes_back_to_it() -> None:
    async def scenario() -> None:
        good = Backend(delay=0.02)
        server, good_url = await serve(good.answer)
        dead_url = f"http://127.0.0.1:{free_port()}"  # nothing listens: every connection is refused
        gateway = Gateway(random.Random(0))
        gateway.update(route({"dead": dead_url, "good": good_url}, limit=1, queue=10))
        replies = await asyncio.gather(*(call(gateway, "/api", str(n).encode()) for n in range(6)))
        assert [reply["status"] for reply in replies] == [200] * 6
        assert not gateway.lanes["api"].backends["dead"].is_routable
        # the next tick's routes still list it, from a health check older than the refusal: it stays out
        gateway.update(route({"dead": dead_url, "good": good_url}, checked_at=0.0))
        assert not gateway.lanes["api"].backends["dead"].is_routable
        assert len(good.seen) == 6
        await shut(gateway, server)

    asyncio.run(scenario())


def test_a_replica_gets_at_most_max_concurrency_requests() -> None:
    async def scenario() -> None:
        backends = [Backend(delay=0.01), Backend(delay=0.01)]
        servers = [await serve(b.answer) for b in backends]
        gateway = Gateway(random.Random(4))
        gateway.update(route({f"r{i}": url for i, (_, url) in enumerate(servers)}, limit=2, queue=20))
        replies = await asyncio.gather(*(call(gateway, "/api", b"1") for _ in range(24)))
        assert {reply["status"] for reply in replies} == {200}
        assert [b.most_busy for b in backends] == [2, 2]
        await shut(gateway, *(server for server, _ in servers))

    asyncio.run(scenario())


def test_a_client_that_leaves_the_queue_is_never_sent() -> None:
    async def scenario() -> None:
        backend = Backend(delay=0.2)
        server, url = await serve(backend.answer)
        gateway = Gateway(random.Random(0))
        gateway.update(route({"r0": url}, limit=1))
        first = asyncio.ensure_future(call(gateway, "/api", b"1"))
        await asyncio.sleep(0.05)
        leave = asyncio.Event()
        second = asyncio.ensure_future(call(gateway, "/api", b"2", leave=leave))
        await asyncio.sleep(0.02)
        assert gateway.lanes["api"].queued == 1
        leave.set()
        assert (await second)["status"] is None  # nobody to answer
        assert gateway.lanes["api"].queued == 0
        assert (await first)["status"] == 200
        await asyncio.sleep(0.05)
        assert backend.seen == [b"1"]
        await shut(gateway, server)

    asyncio.run(scenario())


def test_a_body_over_max_body_size_is_refused_before_it_is_buffered() -> None:
    async def scenario() -> None:
        backend = Backend()
        server, url = await serve(backend.answer)
        gateway = Gateway()
        gateway.update(route({"r0": url}, max_body_size=10))
        declared = await call(gateway, "/api", b"x" * 11)
        assert declared["status"] == 413 and b"max_body_size of 10 bytes" in declared["body"]
        assert declared["headers"][b"content-type"] == b"application/json"
        streamed = await call(gateway, "/api", b"", chunks=(b"x" * 6, b"x" * 6, b"x" * 6))
        assert streamed["status"] == 413 and b"PayloadTooLarge" in streamed["body"]
        assert (await call(gateway, "/api", b"x" * 10))["status"] == 200
        assert backend.seen == [b"x" * 10]
        await shut(gateway, server)

    asyncio.run(scenario())


def test_an_api_at_zero_replicas_queues_asks_for_a_replica_and_serves_when_it_is_ready() -> None:
    async def scenario() -> None:
        backend = Backend()
        server, url = await serve(backend.answer)
        asked: list[str] = []
        gateway = Gateway(on_demand=asked.append)
        gateway.update(route({}, wakes=True))
        waiting = asyncio.ensure_future(call(gateway, "/api", b"7"))
        await asyncio.sleep(0.02)
        assert asked == ["api"] and not waiting.done()
        gateway.update(route({}, expecting=True))  # the daemon started one
        await asyncio.sleep(0.02)
        assert not waiting.done()
        gateway.update(route({"r0": url}))
        reply = await waiting
        assert (reply["status"], reply["body"]) == (200, b'{"ok":7}')
        await shut(gateway, server)

    asyncio.run(scenario())


def test_answers_503_with_retry_after_when_nothing_can_serve() -> None:
    async def scenario() -> None:
        gateway = Gateway()
        gateway.update(route({}))
        reply = await call(gateway, "/api", b"{}")
        assert reply["status"] == 503 and reply["headers"][b"retry-after"] == b"1"
        assert b"no ready replica" in reply["body"] and b"x-request-id" in reply["headers"]
        missing = await call(gateway, "/other", b"{}")
        assert missing["status"] == 404 and b"deployed: api" in missing["body"]

    asyncio.run(scenario())


def test_splitter_routes_by_weight_and_counts_under_its_own_name() -> None:
    async def scenario() -> None:
        backend = Backend()
        server, url = await serve(backend.answer)
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


def test_a_path_that_names_no_api_is_answered_404_before_its_body_is_read() -> None:
    async def scenario() -> None:
        gateway = Gateway()
        gateway.update(route({}))
        reads: list[dict[str, Any]] = []
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:  # as a client streaming a huge body, chunk after chunk
            reads.append({})
            return {"type": "http.request", "body": b"x" * 1024, "more_body": True}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        headers = [(b"x-request-id", b"lost-1")]
        scope = {"type": "http", "method": "POST", "path": "/nope", "query_string": b"", "headers": headers}
        await gateway(scope, receive, send)
        assert sent[0]["status"] == 404 and b"no API named 'nope'" in sent[1]["body"]
        assert (b"x-request-id", b"lost-1") in sent[0]["headers"]
        assert reads == []  # not one chunk of the body was read, let alone buffered

    asyncio.run(scenario())


def test_the_timeout_is_one_deadline_from_arrival_queue_included() -> None:
    async def scenario() -> None:
        backend = Backend(delay=0.3)
        server, url = await serve(backend.answer)
        gateway = Gateway()
        gateway.update(route({"r0": url}, limit=1, timeout=0.5))
        first, second = await asyncio.gather(call(gateway, "/api", b"1"), call(gateway, "/api", b"2"))
        assert first["status"] == 200
        # it waited 0.3 s for the slot, then had 0.2 s left for a replica that takes 0.3 s
        assert second["status"] == 504 and b"GatewayTimeout" in second["body"]
        await asyncio.sleep(0.3)
        await shut(gateway, server)

    asyncio.run(scenario())


def test_a_request_whose_deadline_passes_in_the_queue_gets_504() -> None:
    async def scenario() -> None:
        backend = Backend(delay=0.5)
        server, url = await serve(backend.answer)
        gateway = Gateway()
        gateway.update(route({"r0": url}, limit=1, timeout=0.2))
        busy = asyncio.ensure_future(call(gateway, "/api", b"1"))
        await asyncio.sleep(0.02)
        queued = await call(gateway, "/api", b"2")
        assert queued["status"] == 504 and b"waiting in the gateway's queue" in queued["body"]
        assert (await busy)["status"] == 504
        assert backend.seen == [b"1"]  # the queued one was never sent
        await asyncio.sleep(0.5)
        await shut(gateway, server)

    asyncio.run(scenario())


def test_a_request_that_timed_out_keeps_its_slot_until_the_replica_answers() -> None:
    async def scenario() -> None:
        backend = Backend(delays={b"slow": 0.6})
        server, url = await serve(backend.answer)
        gateway = Gateway()
        gateway.update(route({"r0": url}, limit=1, timeout=0.3))
        lane = gateway.lanes["api"]
        assert (await call(gateway, "/api", b"slow"))["status"] == 504
        assert lane.in_flight == 1  # the replica still works on it: max_concurrency 1 leaves no room
        late = asyncio.ensure_future(call(gateway, "/api", b"1"))
        await asyncio.sleep(0.05)
        assert lane.queued == 1 and backend.seen == [b"slow"]  # it waits: the replica still works on the slow one
        assert (await late)["status"] in (200, 504)  # served once the slot frees, unless its deadline came first
        await asyncio.sleep(0.4)  # the slow one has answered (to nobody) by now
        assert lane.in_flight == 0 and backend.most_busy == 1  # never two at once, though one timed out
        assert (await call(gateway, "/api", b"2"))["status"] == 200  # the connection is fine to use again
        await shut(gateway, server)

    asyncio.run(scenario())
