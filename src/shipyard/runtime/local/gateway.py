"""The gateway: one ASGI app that sends `/<api>/...` to the API's least busy ready replica.

A splitter's path picks an API by weight and copies the request to its shadows, whose answers are
compared with the primary's and then dropped. A request whose replica failed before sending any byte
of a response is retried once, on another replica when there is one. The daemon calls `update` every
tick with the ready replicas and takes back what the gateway measured.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from shipyard.errors import NotFound, ShipyardError
from shipyard.runtime.local.admission import APIRoute, Backend, Lane, Overloaded
from shipyard.runtime.local.gateway_metrics import GatewayMetrics
from shipyard.runtime.local.router import Splitter
from shipyard.runtime.local.state import ShadowStats
from shipyard.runtime.local.upstream import Response, UpstreamError, UpstreamTimeout, end_to_end
from shipyard.runtime.local.window import Summary

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_REQUEST_ID = b"x-request-id"
_ID_PREFIX = secrets.token_hex(12)  # unique per process; the counter makes ids unique within it
_ID_COUNTER = itertools.count()
_JSON = b"application/json"


class BadGateway(ShipyardError):
    status_code = 502

    def __init__(self, api: str, reason: str) -> None:
        super().__init__(f"API {api!r}: its replica failed to answer ({reason}); retry, and see `shipyard logs {api}`")


class GatewayTimeout(ShipyardError):
    status_code = 504

    def __init__(self, api: str, seconds: float) -> None:
        super().__init__(f"API {api!r} did not answer within its timeout of {seconds:g}s; raise `timeout` or retry")


@dataclass(frozen=True)
class RouteTable:
    apis: Mapping[str, APIRoute] = field(default_factory=dict)
    splitters: Mapping[str, Splitter] = field(default_factory=dict)


@dataclass(frozen=True)
class Traffic:
    """What the gateway saw of one API since the last report."""

    average_load: float
    """In-flight plus queued requests, time-averaged: the autoscaler's input."""
    in_flight: int
    queued: int
    last_minute: Summary


@dataclass(frozen=True)
class Report:
    apis: Mapping[str, Traffic]
    shadows: tuple[ShadowStats, ...]
    """Comparisons since the last report, to add to the stored totals."""


@dataclass(frozen=True)
class _Request:
    method: str
    target: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    request_id: bytes


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    seconds: float


@dataclass
class _Comparison:
    compared: int = 0
    agreed: int = 0
    failed: int = 0
    primary_ms: float = 0.0
    shadow_ms: float = 0.0


class Gateway:
    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self.lanes: dict[str, Lane] = {}
        self.splitters: dict[str, Splitter] = {}
        self.metrics = GatewayMetrics(self)
        self._comparisons: dict[tuple[str, str], _Comparison] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- the daemon's side ----------------------------------------------------------------------------------

    def update(self, table: RouteTable) -> Report:
        for name in set(self.lanes) - set(table.apis):
            self.lanes.pop(name).close()
        for name, route in table.apis.items():
            if name in self.lanes:
                self.lanes[name].update(route)
            else:
                self.lanes[name] = Lane(route, self._rng)
        self.splitters = dict(table.splitters)
        return self._report()

    def _report(self) -> Report:
        now = time.time()
        apis = {
            name: Traffic(lane.average_load(), lane.in_flight, lane.queued, lane.window.summary(now))
            for name, lane in self.lanes.items()
        }
        for name in self.splitters:
            window = self.metrics.splitter_window(name)
            apis[name] = Traffic(0.0, 0, 0, window.summary(now))
        shadows = tuple(
            ShadowStats(splitter, shadow, c.compared, c.agreed, c.failed, c.primary_ms, c.shadow_ms)
            for (splitter, shadow), c in self._comparisons.items()
        )
        self._comparisons.clear()
        return Report(apis, shadows)

    # -- the clients' side ----------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path == "/metrics":
            await _respond(send, 200, self.metrics.render(), self.metrics.content_type)
            return
        if path in ("/healthz", "/readyz"):
            await _respond(send, 200, b'{"status":"ok"}', _JSON)
            return
        await self._proxy(scope, receive, send)

    async def _proxy(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        name, _, rest = raw[1:].partition(b"/")
        api = name.decode("latin-1")
        request = await _read_request(scope, receive, b"/" + rest)
        started = time.perf_counter()
        try:
            if api in self.splitters:
                response = await self._split(self.splitters[api], request)
            elif api in self.lanes:
                response = await self._forward(self.lanes[api], request)
            else:
                raise NotFound(f"no API named {api!r} is deployed here; deployed: {self._names()}")
        except ShipyardError as exc:
            response = _error(exc)
        if api in self.splitters:
            self.metrics.observe_splitter(api, response.status, time.perf_counter() - started)
        headers = end_to_end(response.headers)
        if not any(name.lower() == _REQUEST_ID for name, _ in headers):
            headers.append((_REQUEST_ID, request.request_id))
        headers.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    async def _forward(self, lane: Lane, request: _Request) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = await self._exchange(lane, request)
            status = response.status
            return response
        except ShipyardError as exc:
            status = exc.status_code
            raise
        finally:
            self.metrics.observe(lane, status, time.perf_counter() - started)

    async def _exchange(self, lane: Lane, request: _Request) -> Response:
        route = lane.route
        backend = await lane.admit()
        try:
            return await self._send(backend, request, route)
        except UpstreamError as exc:
            if not exc.received_nothing:
                raise _upstream_failure(route, exc) from None
        finally:
            lane.release(backend)
        # the replica answered nothing at all: try once more, elsewhere if we can
        exclude = {backend.id} if lane.has_other(backend.id) else set()
        retry = await lane.admit(exclude)
        try:
            return await self._send(retry, request, route)
        except UpstreamError as exc:
            raise _upstream_failure(route, exc) from None
        finally:
            lane.release(retry)

    @staticmethod
    async def _send(backend: Backend, request: _Request, route: APIRoute) -> Response:
        return await backend.upstream.request(
            request.method, request.target, request.headers, request.body, route.timeout
        )

    async def _split(self, splitter: Splitter, request: _Request) -> Response:
        route = splitter.route(self._rng)
        primary_lane = self.lanes.get(route.primary)
        if primary_lane is None:
            raise Overloaded(splitter.name, f"routes to {route.primary!r}, which is not deployed")
        if not route.shadows:
            return await self._forward(primary_lane, request)
        primary: asyncio.Future[_Answer | None] = asyncio.get_running_loop().create_future()
        for shadow in route.shadows:
            self._spawn(self._shadow(splitter.name, shadow, request, primary))
        started = time.perf_counter()
        try:
            response = await self._forward(primary_lane, request)
        except BaseException:
            primary.set_result(None)
            raise
        primary.set_result(_Answer(response.status, response.body, time.perf_counter() - started))
        return response

    async def _shadow(
        self, splitter: str, shadow: str, request: _Request, primary: asyncio.Future[_Answer | None]
    ) -> None:
        comparison = self._comparisons.setdefault((splitter, shadow), _Comparison())
        lane = self.lanes.get(shadow)
        backend = lane.try_admit() if lane is not None else None
        if lane is None or backend is None:
            comparison.failed += 1  # no room: a shadow never queues, nor delays anyone
            return
        started = time.perf_counter()
        response: Response | None = None
        try:
            response = await self._send(backend, request, lane.route)
        except UpstreamError:
            pass
        finally:
            lane.release(backend)
            seconds = time.perf_counter() - started
            self.metrics.observe(lane, response.status if response else 502, seconds)
        answer = await primary
        comparison = self._comparisons.setdefault((splitter, shadow), _Comparison())
        if answer is None:
            return
        if response is None:
            comparison.failed += 1
            return
        comparison.compared += 1
        comparison.agreed += _agree(answer, response)
        comparison.primary_ms += answer.seconds * 1000
        comparison.shadow_ms += seconds * 1000

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _names(self) -> str:
        return ", ".join(sorted([*self.lanes, *self.splitters])) or "none"


def _agree(answer: _Answer, response: Response) -> bool:
    if answer.status != response.status:
        return False
    if answer.body == response.body:
        return True
    try:
        return bool(orjson.loads(answer.body) == orjson.loads(response.body))
    except orjson.JSONDecodeError:
        return False


def _upstream_failure(route: APIRoute, exc: UpstreamError) -> ShipyardError:
    if isinstance(exc, UpstreamTimeout):
        return GatewayTimeout(route.name, route.timeout)
    return BadGateway(route.name, str(exc))


def _error(exc: ShipyardError) -> Response:
    body = orjson.dumps({"error": exc.to_dict()})
    headers = [(b"content-type", _JSON)]
    if exc.status_code == 503:
        headers.append((b"retry-after", b"1"))
    return Response(exc.status_code, headers, body)


async def _read_request(scope: Scope, receive: Receive, path: bytes) -> _Request:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    headers = list(scope["headers"])
    request_id = next((value for name, value in headers if name == _REQUEST_ID), None)
    if request_id is None:
        request_id = f"{_ID_PREFIX}{next(_ID_COUNTER):08x}".encode()
        headers.append((_REQUEST_ID, request_id))
    query = scope.get("query_string") or b""
    target = (path + (b"?" + query if query else b"")).decode("latin-1")
    return _Request(scope["method"], target, headers, b"".join(chunks), request_id)


async def _respond(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
