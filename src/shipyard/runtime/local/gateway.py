"""The gateway: one ASGI app that sends `/<api>/...` to the API's least busy ready replica.

A splitter's path picks an API by weight and copies the request to its shadows, whose answers are
compared with the primary's and then dropped. A request that provably never reached its replica (the
connection was refused or reset unread) is retried once, on another replica when there is one; one the
replica took is never sent elsewhere. A path that names no API is answered 404 before its body is read,
and a body over the API's `max_body_size` is refused before it is buffered. The API's `timeout` is one
deadline from the request's arrival: time in the queue counts, the replica gets what is left, and 504
answers its passing. The daemon calls `update` every tick with the ready replicas and takes back what
the gateway measured.
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

from shipyard.errors import NotFound, PayloadTooLarge, ShipyardError
from shipyard.runtime.local.admission import DEFAULT_MAX_BODY, APIRoute, Backend, ClientLeft, Lane
from shipyard.runtime.local.errors import BadGateway, GatewayTimeout, Overloaded
from shipyard.runtime.local.gateway_metrics import GatewayMetrics
from shipyard.runtime.local.router import Splitter
from shipyard.runtime.local.shadow import Answer, Pair, ShadowBook, ShadowLatency
from shipyard.runtime.local.state import ShadowStats
from shipyard.runtime.local.upstream import Exchange, Outcome, Response, UpstreamError, UpstreamTimeout, end_to_end
from shipyard.runtime.local.window import Summary

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_REQUEST_ID = b"x-request-id"
_ID_PREFIX = secrets.token_hex(12)  # unique per process; the counter makes ids unique within it
_ID_COUNTER = itertools.count()
_JSON = b"application/json"


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
    shadow_latency: Mapping[Pair, ShadowLatency] = field(default_factory=dict)
    busy: Mapping[str, int] = field(default_factory=dict)
    """Requests in flight per replica id: a replica taken out of the routes is signalled once it has none."""


@dataclass(frozen=True)
class _Request:
    method: str
    target: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    request_id: bytes
    receive: Receive
    arrived: float
    """perf_counter() when it arrived: its deadline is this plus its API's timeout."""


class _Rejected(Exception):
    """The request is answered before it is read whole (its body is too large)."""

    def __init__(self, error: ShipyardError, request_id: bytes) -> None:
        self.error = error
        self.request_id = request_id


_CLIENT_LEFT = 499  # as nginx counts a request whose client went away before its answer
_LEAST_WAIT = 0.001
"""A request admitted just as its deadline passes still gets this long (its slot is already taken)."""


class Gateway:
    def __init__(self, rng: random.Random | None = None, on_demand: Callable[[str], None] | None = None) -> None:
        self._rng = rng or random.Random()
        self.on_demand: Callable[[str], None] = on_demand or (lambda api: None)
        """Called (on the gateway's loop) when a request waits for an API that has no replica."""
        self.lanes: dict[str, Lane] = {}
        self.splitters: dict[str, Splitter] = {}
        self.metrics = GatewayMetrics(self)
        self.shadows = ShadowBook()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- the daemon's side ----------------------------------------------------------------------------------

    def update(self, table: RouteTable) -> Report:
        for name in set(self.lanes) - set(table.apis):
            self.lanes.pop(name).close()
        for name, route in table.apis.items():
            if name in self.lanes:
                self.lanes[name].update(route)
            else:
                self.lanes[name] = Lane(route, self._rng, self._ask_for_replica)
        self.splitters = dict(table.splitters)
        return self._report()

    def _ask_for_replica(self, api: str) -> None:
        self.on_demand(api)

    def _report(self) -> Report:
        now = time.time()
        apis = {
            name: Traffic(lane.average_load(), lane.in_flight, lane.queued, lane.window.summary(now))
            for name, lane in self.lanes.items()
        }
        for name in self.splitters:
            window = self.metrics.splitter_window(name)
            apis[name] = Traffic(0.0, 0, 0, window.summary(now))
        busy: dict[str, int] = {}
        for lane in self.lanes.values():
            busy |= lane.in_flight_by_replica()
        return Report(apis, self.shadows.take(), self.shadows.latency(now), busy)

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
        started = time.perf_counter()
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        name, _, rest = raw[1:].partition(b"/")
        api = name.decode("latin-1")
        lane = self.lanes.get(api)
        splitter = self.splitters.get(api) if lane is None else None
        if lane is None and splitter is None:  # answered before a byte of its body is read
            error = NotFound(f"no API named {api!r} is deployed here; deployed: {self._names()}")
            await _send_response(send, _error(error), _request_id(scope["headers"]))
            return
        limit = lane.route.max_body_size if lane is not None else self._splitter_limit(splitter)
        try:
            request = await _read_request(scope, receive, b"/" + rest, limit, started)
        except _Rejected as rejected:
            self._observe(lane, api, rejected.error.status_code, time.perf_counter() - started)
            await _send_response(send, _error(rejected.error), rejected.request_id)
            return
        try:
            if lane is not None:
                response, _ = await self._forward(lane, request)
            else:
                assert splitter is not None  # one of the two is, or it was a 404
                response = await self._split(splitter, request)
        except ShipyardError as exc:
            response = _error(exc)
        except ClientLeft:
            if lane is None:
                self.metrics.observe_splitter(api, _CLIENT_LEFT, time.perf_counter() - started)
            return  # nobody to answer
        if lane is None:
            self.metrics.observe_splitter(api, response.status, time.perf_counter() - started)
        await _send_response(send, response, request.request_id)

    def _observe(self, lane: Lane | None, api: str, status: int, seconds: float) -> None:
        if lane is not None:
            self.metrics.observe(lane, status, seconds)
        else:
            self.metrics.observe_splitter(api, status, seconds)

    def _splitter_limit(self, splitter: Splitter | None) -> int:
        """The largest body any of the splitter's APIs takes (the default when none is deployed)."""
        targets = splitter.targets if splitter is not None else ()
        limits = [self.lanes[target].route.max_body_size for target in targets if target in self.lanes]
        return max(limits) if limits else DEFAULT_MAX_BODY

    async def _forward(self, lane: Lane, request: _Request) -> tuple[Response, float]:
        """The replica's answer and how long the replica took (the gateway's queue not included)."""
        started = time.perf_counter()
        status = 500
        try:
            response, seconds = await self._exchange(lane, request, request.arrived + lane.route.timeout)
            status = response.status
            return response, seconds
        except ShipyardError as exc:
            status = exc.status_code
            raise
        except ClientLeft:
            status = _CLIENT_LEFT
            raise
        finally:
            self.metrics.observe(lane, status, time.perf_counter() - started)

    async def _exchange(self, lane: Lane, request: _Request, deadline: float) -> tuple[Response, float]:
        route = lane.route
        exchange, backend = await self._begin(lane, request, deadline)
        try:
            return await exchange.future, time.perf_counter() - exchange.started
        except UpstreamError as exc:
            if not exc.never_reached:
                raise _upstream_failure(route, exc) from None
        # the replica's process never read the request: try once more, elsewhere if we can, if time is left
        if time.perf_counter() >= deadline:
            raise GatewayTimeout(route.name, route.timeout)
        exclude = {backend.id} if lane.has_other(backend.id) else set()
        exchange, _ = await self._begin(lane, request, deadline, exclude)
        try:
            return await exchange.future, time.perf_counter() - exchange.started
        except UpstreamError as exc:
            raise _upstream_failure(route, exc) from None

    async def _begin(
        self, lane: Lane, request: _Request, deadline: float, exclude: set[str] | None = None
    ) -> tuple[Exchange, Backend]:
        """Admit the request to a replica and send it; a waiting request is sent the moment a slot frees."""
        backend = lane.try_admit(exclude or ())
        if backend is not None:
            return self._start(lane, backend, request, deadline), backend
        lane.check_room()
        started: list[Exchange] = []
        gone = asyncio.ensure_future(_disconnect(request.receive))  # only a waiting request watches its client

        def send(chosen: Backend) -> None:
            started.append(self._start(lane, chosen, request, deadline))

        try:
            backend = await lane.admit(exclude or (), gone, send, deadline)
        except ClientLeft:
            for exchange in started:  # sent as the client left: its answer goes nowhere
                exchange.future.add_done_callback(_discard)
            raise
        finally:
            gone.cancel()
        return started[0], backend

    @staticmethod
    def _start(lane: Lane, backend: Backend, request: _Request, deadline: float) -> Exchange:
        """Send the request with what is left of its deadline; its slot is released when the replica is done
        with it (answered, or the connection ended), which may be after the client got its 504."""

        def done(outcome: Outcome) -> None:
            lane.release(backend, refused=isinstance(outcome, UpstreamError) and outcome.refused)

        left = max(deadline - time.perf_counter(), _LEAST_WAIT)
        return backend.upstream.start(request.method, request.target, request.headers, request.body, left, done)

    async def _split(self, splitter: Splitter, request: _Request) -> Response:
        route = splitter.route(self._rng)
        primary_lane = self.lanes.get(route.primary)
        if primary_lane is None:
            raise Overloaded(splitter.name, f"routes to {route.primary!r}, which is not deployed")
        if not route.shadows:
            return (await self._forward(primary_lane, request))[0]
        primary: asyncio.Future[Answer | None] = asyncio.get_running_loop().create_future()
        for shadow in route.shadows:
            self._spawn(self._shadow((splitter.name, shadow), request, primary))
        try:
            response, seconds = await self._forward(primary_lane, request)
        except BaseException:
            primary.set_result(None)
            raise
        primary.set_result(Answer(response.status, response.body, seconds))
        return response

    async def _shadow(self, pair: Pair, request: _Request, primary: asyncio.Future[Answer | None]) -> None:
        lane = self.lanes.get(pair[1])
        backend = lane.try_admit() if lane is not None else None
        if lane is None or backend is None:
            self.shadows.skipped(pair)  # no room: a shadow never queues, nor delays anyone
            return
        exchange = self._start(lane, backend, request, request.arrived + lane.route.timeout)
        answer: Answer | None = None
        try:
            response = await exchange.future
            answer = Answer(response.status, response.body, time.perf_counter() - exchange.started)
        except UpstreamError:
            pass
        finally:
            self.metrics.observe(lane, answer.status if answer else 502, time.perf_counter() - exchange.started)
        primary_answer = await primary
        if primary_answer is None:
            return
        if answer is None:
            self.shadows.failed(pair)
            return
        self.shadows.compare(pair, primary_answer, answer)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _names(self) -> str:
        return ", ".join(sorted([*self.lanes, *self.splitters])) or "none"


def _discard(future: asyncio.Future[Response]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved, so that asyncio does not report it as lost


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


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


async def _read_request(scope: Scope, receive: Receive, path: bytes, limit: int, arrived: float) -> _Request:
    headers = list(scope["headers"])
    request_id = None
    length = None
    for name, value in headers:
        if name == _REQUEST_ID:
            request_id = value
        elif name == b"content-length" and value.isdigit():
            length = int(value)
    if request_id is None:
        request_id = _new_request_id()
        headers.append((_REQUEST_ID, request_id))
    if length is not None and length > limit:
        raise _Rejected(PayloadTooLarge(length, limit), request_id)  # refused before reading a byte of it
    body = await _read_body(receive, limit, request_id)
    query = scope.get("query_string") or b""
    target = (path + (b"?" + query if query else b"")).decode("latin-1")
    return _Request(scope["method"], target, headers, body, request_id, receive, arrived)


def _request_id(headers: list[tuple[bytes, bytes]]) -> bytes:
    return next((value for name, value in headers if name == _REQUEST_ID), None) or _new_request_id()


def _new_request_id() -> bytes:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):08x}".encode()


async def _read_body(receive: Receive, limit: int, request_id: bytes) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        if len(body) > limit:
            raise _Rejected(PayloadTooLarge(len(body), limit), request_id)
        return body
    chunks, size = [body], len(body)
    while message.get("more_body"):
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _Rejected(PayloadTooLarge(size, limit), request_id)  # stop buffering a body sent in chunks
        chunks.append(chunk)
    return b"".join(chunks)


async def _send_response(send: Send, response: Response, request_id: bytes) -> None:
    headers = end_to_end(response.headers)
    if not any(name.lower() == _REQUEST_ID for name, _ in headers):
        headers.append((_REQUEST_ID, request_id))
    headers.append((b"content-length", str(len(response.body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


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
