"""The gateway's HTTP/1.1 client to one replica: a pool of keep-alive connections on asyncio protocols.

Written on httptools rather than a client library because it is on every request's path twice over
(send and parse); an exchange costs one write and one parse. A failure says whether the request provably
never reached the replica's process, which alone allows retrying it elsewhere: the connection was refused,
or the replica's kernel reset it (our bytes arrived at a socket its process had closed, or it ended with
them unread). A connection closed cleanly with no answer means the replica read the request and then
died or hung up on it: sending it to another replica could kill that one too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
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


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.idle_since = time.monotonic()
        self.is_closed = False
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Response] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._received = False
        self._keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def send(self, data: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._headers, self._body, self._received = [], [], False
        self.transport.write(data)
        return self._waiter

    def data_received(self, data: bytes) -> None:
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"malformed response: {exc}"))
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._keep_alive = self._parser.should_keep_alive()
        waiter, self._waiter = self._waiter, None
        response = Response(self._parser.get_status_code(), self._headers, b"".join(self._body))
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_closed = True
        if exc is None:
            reason = "it closed the connection without an answer"
        else:
            reason = f"connection lost: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}"
        self._fail(UpstreamError(reason, never_reached=not self._received and isinstance(exc, _UNREAD)))

    def _fail(self, error: UpstreamError) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

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

    async def request(self, method: str, target: str, headers: Headers, body: bytes, timeout: float) -> Response:
        connection = await self._connection()
        data = _encode(method, target, self._host_header, headers, body)
        waiter = connection.send(data)
        # one timer, not asyncio.wait_for: wait_for wraps every request in a task of its own
        timer = asyncio.get_running_loop().call_later(timeout, _expire, waiter, timeout)
        try:
            response = await waiter
        except BaseException:
            connection.close()
            raise
        finally:
            timer.cancel()
        self._release(connection)
        return response

    async def _connection(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if connection.is_reusable:
                return connection
            connection.close()
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await loop.create_connection(_Connection, self.host, self.port)
        except OSError as exc:
            raise UpstreamError(f"cannot connect: {exc.strerror or exc}", never_reached=True, refused=True) from None
        protocol.transport = transport  # uvloop may call connection_made only on the next loop iteration
        return protocol

    def _release(self, connection: _Connection) -> None:
        if connection.is_reusable:
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            connection.close()

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()


def _expire(waiter: asyncio.Future[Response], timeout: float) -> None:
    if not waiter.done():
        waiter.set_exception(UpstreamTimeout(timeout))


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
