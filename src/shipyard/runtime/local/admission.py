"""Admission for one API in the gateway: at most `max_concurrency` in flight per replica, a bounded queue.

A request takes the ready replica with the fewest requests in flight, and no replica ever has more than
`max_concurrency` of the gateway's requests (the replica's own queue stays empty, so a replica that is
told to drain has only what it is working on). When every replica is full a request waits in the API's
queue, which holds `max_queue_length` per ready replica; beyond that, or when no replica is ready and
none is coming, it is refused at once (the caller answers 503 with Retry-After). A replica is coming
when one is starting, or when a ready one fails its health checks (it is slow, or busy holding the GIL:
requests wait for it until their deadline rather than being refused). An API scaled to zero queues its
requests too, and asks the daemon for a replica (`on_demand`). A request waits no longer than its
deadline (the API's `timeout` from its arrival), then gets 504. A freed slot goes to the oldest
waiter that may use it (a retry never goes back to the replica that just failed it). A replica that
refuses a connection leaves the rotation at once, until a health check newer than the refusal says it is
back. Lives on the gateway's event loop, so it needs no locks.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from shipyard.runtime.local.errors import GatewayTimeout, Overloaded
from shipyard.runtime.local.router import least_in_flight
from shipyard.runtime.local.upstream import Upstream
from shipyard.runtime.local.window import Window

DEFAULT_MAX_BODY = 10 * 1024**2


class ClientLeft(Exception):
    """The client disconnected while its request waited: nothing is sent, nobody is answered."""


@dataclass(frozen=True)
class APIRoute:
    """What the gateway needs to know of one API; the daemon sends a new set every tick."""

    name: str
    max_concurrency: int
    max_queue_length: int
    timeout: float
    replicas: Mapping[str, str] = field(default_factory=dict)
    """Ready replicas: id → base URL."""
    expecting: bool = False
    """A replica is coming (starting, or ready but failing its checks): requests may wait for it even when
    none is routed."""
    wakes: bool = False
    """The API is scaled to zero and may scale up: a request waits, and asks for a replica."""
    max_body_size: int = DEFAULT_MAX_BODY
    checked_at: float = 0.0
    """When the daemon last checked the replicas' health (epoch seconds)."""
    unavailable: str = "has no ready replica"
    """Why a request is refused when no replica is routed and none is coming."""


@dataclass
class Backend:
    id: str
    url: str
    upstream: Upstream
    in_flight: int = 0
    is_routable: bool = True
    refused_at: float | None = None
    """When a connection to it was refused; it stays out until a later health check."""


@dataclass(eq=False)
class _Waiter:
    future: asyncio.Future[Backend]
    exclude: Collection[str]
    on_admit: Callable[[Backend], None] | None = None
    """Starts the request the moment a slot is handed over; the request then owns the slot."""


class Lane:
    def __init__(
        self, route: APIRoute, rng: random.Random, on_demand: Callable[[str], None] = lambda api: None
    ) -> None:
        self.route = route
        self.backends: dict[str, Backend] = {}
        self.window = Window()
        self._rng = rng
        self._on_demand = on_demand
        self._waiters: deque[_Waiter] = deque()
        self._busy = 0
        self._area = 0.0
        self._since = self._mark = time.monotonic()
        self.update(route)

    # -- the daemon's view --------------------------------------------------------------------------------

    def update(self, route: APIRoute) -> None:
        """Take the new set of ready replicas; ones that left finish their requests but get no more."""
        self.route = route
        for backend_id, backend in list(self.backends.items()):
            if backend_id not in route.replicas:
                backend.is_routable = False
                if backend.in_flight == 0:
                    self._drop(backend_id)
        for backend_id, url in route.replicas.items():
            self._admit_replica(backend_id, url, route.checked_at)
        self._dispatch()
        if not self._may_wait():
            self._refuse_waiters(route.unavailable)
        elif self._waiters and not self._routable():
            self._on_demand(route.name)

    def _admit_replica(self, backend_id: str, url: str, checked_at: float) -> None:
        backend = self.backends.get(backend_id)
        if backend is None or backend.url != url:
            if backend is not None and backend.in_flight == 0:
                backend.upstream.close()
            host, port = url.removeprefix("http://").rsplit(":", 1)
            self.backends[backend_id] = Backend(backend_id, url, Upstream(host, int(port)))
        elif backend.refused_at is None or checked_at > backend.refused_at:
            backend.refused_at = None
            backend.is_routable = True

    @property
    def in_flight(self) -> int:
        return self._busy

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def in_flight_by_replica(self) -> dict[str, int]:
        return {b.id: b.in_flight for b in self.backends.values() if b.in_flight}

    def average_load(self) -> float:
        """In-flight plus queued requests, averaged over time since the last call."""
        self._account()
        now = time.monotonic()
        span = now - self._since
        average = self._area / span if span > 0 else float(self._busy + len(self._waiters))
        self._area, self._since = 0.0, now
        return average

    # -- requests -------------------------------------------------------------------------------------------

    async def admit(
        self,
        exclude: Collection[str] = (),
        gone: asyncio.Future[None] | None = None,
        on_admit: Callable[[Backend], None] | None = None,
        deadline: float | None = None,
    ) -> Backend:
        """A replica with a free slot, waiting in the queue for one if need be, until `deadline` (a
        perf_counter() time; default: the API's timeout from now), then GatewayTimeout.

        `gone` completes when the client disconnects: a waiting request then leaves the queue (ClientLeft).
        `on_admit` is called with the replica as soon as a waiting request gets it, before this returns (the
        gateway sends the request from there, so the replica's freed slot never waits for a task switch);
        its request then owns the slot, and releases it when it ends.
        """
        backend = self.try_admit(exclude)
        if backend is not None:
            if on_admit is not None:
                on_admit(backend)
            return backend
        self.check_room()
        return await self._wait(exclude, gone, on_admit, deadline)

    def check_room(self) -> None:
        """Raise Overloaded when a request could not even wait."""
        if not self._may_wait():
            raise Overloaded(self.route.name, self.route.unavailable)
        capacity = self.route.max_queue_length * max(1, len(self._routable()))
        if len(self._waiters) >= capacity:
            raise Overloaded(self.route.name, f"is at capacity (queue of {capacity} full)")

    def try_admit(self, exclude: Collection[str] = ()) -> Backend | None:
        counts = {b.id: b.in_flight for b in self.backends.values() if b.is_routable and b.id not in exclude}
        chosen = least_in_flight(counts, self._rng, self.route.max_concurrency)
        if chosen is None:
            return None
        backend = self.backends[chosen]
        self._account()
        backend.in_flight += 1
        self._busy += 1
        return backend

    def release(self, backend: Backend, *, refused: bool = False) -> None:
        """A request at `backend` ended; `refused`: its connection was refused (see `refused`)."""
        if refused:
            self.refused(backend)
        self._account()
        backend.in_flight -= 1
        self._busy -= 1
        if backend.in_flight == 0 and not backend.is_routable:
            if self.backends.get(backend.id) is not backend:
                backend.upstream.close()  # replaced by a new process under the same id
            elif backend.refused_at is None:
                self._drop(backend.id)
        self._dispatch()

    def refused(self, backend: Backend) -> None:
        """A connection to `backend` was refused: no more requests go there until it answers a health check."""
        if backend.refused_at is None:
            backend.refused_at = time.time()
        backend.is_routable = False
        if not self._may_wait():
            self._refuse_waiters(self.route.unavailable)

    def has_other(self, backend_id: str) -> bool:
        return any(b.id != backend_id for b in self._routable())

    def close(self) -> None:
        self._refuse_waiters("was deleted")
        for backend in self.backends.values():
            backend.upstream.close()

    async def _wait(
        self,
        exclude: Collection[str],
        gone: asyncio.Future[None] | None,
        on_admit: Callable[[Backend], None] | None,
        deadline: float | None,
    ) -> Backend:
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop.create_future(), exclude, on_admit)
        self._account()
        self._waiters.append(waiter)
        if not self._routable():
            self._on_demand(self.route.name)
        left = self.route.timeout if deadline is None else max(0.0, deadline - time.perf_counter())
        timer = loop.call_later(left, self._expire, waiter.future)  # cheaper than a wait_for task
        if gone is not None:
            gone.add_done_callback(lambda _: _settle(waiter.future, ClientLeft()))
        try:
            backend = await waiter.future
        except asyncio.CancelledError:
            future = waiter.future
            if future.done() and not future.cancelled() and future.exception() is None and on_admit is None:
                self.release(future.result())  # the client left just as a slot came: give it back
            raise
        finally:
            timer.cancel()
            if waiter in self._waiters:
                self._account()
                self._waiters.remove(waiter)
        if gone is not None and gone.done():
            if on_admit is None:
                self.release(backend)  # (a started request releases its slot when it ends)
            raise ClientLeft()
        return backend

    def _expire(self, future: asyncio.Future[Backend]) -> None:
        _settle(future, GatewayTimeout(self.route.name, self.route.timeout, queued=True))

    def _dispatch(self) -> None:
        """Hand free slots to the oldest waiters that may take them."""
        index = 0
        while index < len(self._waiters):
            waiter = self._waiters[index]
            if waiter.future.done():
                self._account()
                del self._waiters[index]
                continue
            backend = self.try_admit(waiter.exclude)
            if backend is None:
                if not waiter.exclude or not self._has_room():
                    return
                index += 1  # only the replica it must avoid has room: a later waiter may take it
                continue
            self._account()
            del self._waiters[index]
            waiter.future.set_result(backend)
            if waiter.on_admit is not None:
                waiter.on_admit(backend)

    def _has_room(self) -> bool:
        return any(b.in_flight < self.route.max_concurrency for b in self._routable())

    def _may_wait(self) -> bool:
        return bool(self._routable()) or self.route.expecting or self.route.wakes

    def _refuse_waiters(self, reason: str) -> None:
        self._account()
        while self._waiters:
            _settle(self._waiters.popleft().future, Overloaded(self.route.name, reason))

    def _routable(self) -> list[Backend]:
        return [b for b in self.backends.values() if b.is_routable]

    def _drop(self, backend_id: str) -> None:
        self.backends.pop(backend_id).upstream.close()

    def _account(self) -> None:
        now = time.monotonic()
        self._area += (self._busy + len(self._waiters)) * (now - self._mark)
        self._mark = now


def _settle(future: asyncio.Future[Backend], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
