"""The gateway's HTTP/1.1 client to one replica: a pool of keep-alive connections on asyncio protocols.

Written on httptools rather than a client library because it is on every request's path twice over
(send and parse); an exchange costs one write and one parse. An exchange ends inside the protocol's
callback: the connection goes back to the pool and `on_done` runs there, before the waiting task wakes,
so the gateway can hand the replica its next request in the same loop iteration as it took the last
answer (with `max_concurrency: 1` the replica otherwise idles through a round of the gateway's loop).

A request past its timeout is answered (the waiting task gets UpstreamTimeout) but the exchange goes on:
the replica is still working on it, so its slot stays taken (`on_done` waits) until the replica answers,
whose late answer is dropped, or the connection ends. So `max_concurrency` holds even for requests that
time out.

A failure says whether the request provably never reached the replica's process, which alone allows
retrying it elsewhere: the connection was refused, or the replica's kernel reset it (our bytes arrived
at a socket its process had closed, or it ended with them unread). A connection closed cleanly with no
answer means the replica read the request and then died or hung up on it: sending it to another replica
could kill that one too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import httptools

IDLE_LIMIT = 4.0
"""Seconds a pooled connection may sit idle; below uvicorn's 5 s keep-alive, so the replica never closes it
under us."""

Headers = Sequence[tuple[bytes, bytes]]


class UpstreamError(Exception):
    def __init__(self, reason: str, *, never_reached: bool = False, refused: bool = False) -> None:
        super().__init__(reason)
        self.never_reached = never_reached
        """The replica's process never read the request: another replica may be tried."""
        self.refused = refused
        """Nothing listens at the replica's port: it is gone, or going."""


class UpstreamTimeout(UpstreamError):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"no answer within {seconds:g}s")


_UNREAD = (ConnectionResetError, BrokenPipeError)
"""How the kernel reports a request that the replica's process never read."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


Outcome = Response | UpstreamError


class Exchange:
    """One request at one replica: its answer (`future`), when it was sent, and a callback run the moment it
    ends, before anyone awaits the answer, so that the replica's next request can go out on the same
    connection at once."""

    def __init__(self, started: float, on_done: Callable[[Outcome], None]) -> None:
        self.future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self.started = started
        self._on_done: Callable[[Outcome], None] | None = on_done
        self._timer: asyncio.TimerHandle | None = None

    def arm(self, timer: asyncio.TimerHandle) -> None:
        self._timer = timer

    def time_out(self, error: UpstreamTimeout) -> None:
        """Give up waiting for the answer; the exchange itself ends (and `on_done` runs) only with `settle`."""
        if not self.future.done():
            self.future.set_exception(error)

    def settle(self, outcome: Outcome) -> None:
        on_done, self._on_done = self._on_done, None
        if on_done is None:
            return  # settled already
        if self._timer is not None:
            self._timer.cancel()
        on_done(outcome)
        if self.future.done():
            return
        if isinstance(outcome, UpstreamError):
            self.future.set_exception(outcome)
        else:
            self.future.set_result(outcome)


class _Connection(asyncio.Protocol):
    def __init__(self, pool: Upstream) -> None:
        self.transport: asyncio.Transport | None = None
        self.idle_since = time.monotonic()
        self.is_closed = False
        self._pool = pool
        self._parser = httptools.HttpResponseParser(self)
        self._exchange: Exchange | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._received = False
        self._keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def send(self, data: bytes, exchange: Exchange) -> None:
        assert self.transport is not None
        self._exchange = exchange
        self._headers, self._body, self._received = [], [], False
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.close()
            self._fail(UpstreamError(f"malformed response: {exc}"))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._keep_alive = self._parser.should_keep_alive()
        exchange, self._exchange = self._exchange, None
        response = Response(self._parser.get_status_code(), self._headers, b"".join(self._body))
        self._pool.release(self)  # back in the pool first: the next request may go out on it right now
        if exchange is not None:
            exchange.settle(response)

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_closed = True
        if exc is None:
            reason = "it closed the connection without an answer"
        else:
            reason = f"connection lost: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}"
        self._fail(UpstreamError(reason, never_reached=not self._received and isinstance(exc, _UNREAD)))

    def expire(self, exchange: Exchange, timeout: float) -> None:
        if self._exchange is exchange:
            # the caller hears of it now; the connection stays with the exchange, which ends when the
            # replica answers (late, to nobody) or the connection does: until then the replica is busy with it
            exchange.time_out(UpstreamTimeout(timeout))

    def _fail(self, error: UpstreamError) -> None:
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            exchange.settle(error)

    @property
    def is_reusable(self) -> bool:
        fresh = time.monotonic() - self.idle_since < IDLE_LIMIT
        closing = self.transport is None or self.transport.is_closing()
        return self._keep_alive and not self.is_closed and not closing and fresh

    def close(self) -> None:
        self.is_closed = True
        if self.transport is not None:
            self.transport.close()


class Upstream:
    """Keep-alive connections to one replica."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._idle: list[_Connection] = []
        self._host_header = f"{host}:{port}".encode()
        self._connecting: set[asyncio.Task[None]] = set()

    def start(
        self,
        method: str,
        target: str,
        headers: Headers,
        body: bytes,
        timeout: float,
        on_done: Callable[[Outcome], None] = lambda outcome: None,
    ) -> Exchange:
        """Send a request: at once on an idle pooled connection, else once a new one is connected.

        `on_done` runs exactly once, as soon as the exchange ends (answered, failed or timed out).
        """
        exchange = Exchange(time.perf_counter(), on_done)
        data = _encode(method, target, self._host_header, headers, body)
        connection = self._idle_connection()
        if connection is not None:
            self._send(connection, data, exchange, timeout)
        else:
            task = asyncio.ensure_future(self._connect_and_send(data, exchange, timeout))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)
        return exchange

    async def request(self, method: str, target: str, headers: Headers, body: bytes, timeout: float) -> Response:
        return await self.start(method, target, headers, body, timeout).future

    def release(self, connection: _Connection) -> None:
        if connection.is_reusable:
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            connection.close()

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()

    def _idle_connection(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if connection.is_reusable:
                return connection
            connection.close()
        return None

    async def _connect_and_send(self, data: bytes, exchange: Exchange, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, connection = await loop.create_connection(lambda: _Connection(self), self.host, self.port)
        except OSError as exc:
            refused = UpstreamError(f"cannot connect: {exc.strerror or exc}", never_reached=True, refused=True)
            exchange.settle(refused)
            return
        connection.transport = transport  # uvloop may call connection_made only on the next loop iteration
        self._send(connection, data, exchange, timeout)

    @staticmethod
    def _send(connection: _Connection, data: bytes, exchange: Exchange, timeout: float) -> None:
        connection.send(data, exchange)
        # one timer, not asyncio.wait_for: wait_for wraps every request in a task of its own
        exchange.arm(asyncio.get_running_loop().call_later(timeout, connection.expire, exchange, timeout))


_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade", b"host", b"content-length"}
)


def _encode(method: str, target: str, host: bytes, headers: Headers, body: bytes) -> bytes:
    lines = [f"{method} {target} HTTP/1.1".encode(), b"host: " + host]
    lines += [name + b": " + value for name, value in headers if name.lower() not in _HOP_BY_HOP]
    lines.append(b"content-length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def end_to_end(headers: Headers) -> list[tuple[bytes, bytes]]:
    """The headers a proxy passes on: all but the hop-by-hop ones (and the length, which it sets)."""
    return [(name, value) for name, value in headers if name.lower() not in _HOP_BY_HOP]
