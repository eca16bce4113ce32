"""Health checks that run beside the control loop, so that a replica that does not answer holds up no tick.

Each replica has at most one check out at a time. A tick starts a check for each replica that has none
out, waits a short, bounded time for the checks it started (a healthy replica answers in a millisecond),
and takes whatever answers have come in, old or new; a check still out is no news. A replica frozen with
SIGSTOP and a 20 s check timeout thus costs each tick nothing, and every other API's crashes are handled
on time.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor

import httpx

from shipyard.runtime.local.health import Check

_THREADS = 64
"""Checks that can be out at once (threads start as needed); one per replica is the most ever asked."""


class Prober:
    def __init__(self, threads: int = _THREADS) -> None:
        self._client = httpx.Client()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="probe")
        self._out: dict[Hashable, Future[Check]] = {}

    def start(self, key: Hashable, url: str, timeout: float) -> bool:
        """GET `url`/readyz unless a check for `key` is already out; whether one was started."""
        if key in self._out:
            return False
        self._out[key] = self._pool.submit(self._check, f"{url}/readyz", timeout)
        return True

    def is_out(self, key: Hashable) -> bool:
        return key in self._out

    def collect(self, started: Collection[Hashable], wait: float) -> dict[Hashable, Check]:
        """The answers that have come in, after waiting up to `wait` seconds for the checks in `started`."""
        fresh = [self._out[key] for key in started if key in self._out]
        if fresh and wait > 0:
            futures.wait(fresh, timeout=wait)
        done = {key: future for key, future in self._out.items() if future.done()}
        for key in done:
            del self._out[key]
        return {key: _outcome(future) for key, future in done.items()}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    def _check(self, url: str, timeout: float) -> Check:
        try:
            answered = self._client.get(url, timeout=timeout).status_code == 200
        except httpx.ConnectError:
            return Check.refused
        except httpx.HTTPError:
            return Check.failed
        return Check.ok if answered else Check.failed


def _outcome(future: Future[Check]) -> Check:
    if future.cancelled() or future.exception() is not None:
        return Check.failed
    return future.result()
