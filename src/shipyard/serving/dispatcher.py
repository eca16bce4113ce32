"""Hands single predictions to worker threads, so the event loop never runs a model.

A worker takes its share of the predictions waiting when it wakes and answers them in small groups: under load the
loop and the workers trade one wake-up per group instead of one per request (with a GIL-bound model the
per-request hand-off otherwise costs more than a small model's prediction). Results are flushed at least
every `FLUSH_SECONDS`, so grouping never delays an answer by more than that.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

FLUSH_SECONDS = 0.0005
Job = tuple[Callable[[], Any], asyncio.Future[Any]]


class Dispatcher:
    def __init__(self, workers: int, loop: asyncio.AbstractEventLoop, name: str = "predict") -> None:
        self._loop = loop
        self._pending: deque[Job] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self.running = 0
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{index}", daemon=True) for index in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def waiting(self) -> int:
        return len(self._pending)

    def submit(self, call: Callable[[], Any]) -> asyncio.Future[Any]:
        """Queue `call` for a worker thread; its return value (or exception) settles the future."""
        future: asyncio.Future[Any] = self._loop.create_future()
        with self._ready:
            self._pending.append((call, future))
            self._ready.notify()
        return future

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._pending and not self._closed:
                    self._ready.wait()
                if self._closed:
                    return
                share = -(-len(self._pending) // len(self._threads))  # leave work for idle siblings
                jobs = [self._pending.popleft() for _ in range(share)]
                self.running += len(jobs)
            self._run(jobs)

    def _run(self, jobs: list[Job]) -> None:
        done: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        flushed = time.monotonic()
        for index, (call, future) in enumerate(jobs):
            if future.cancelled():  # the caller timed out or left while this waited
                done.append((future, None, None))
            else:
                try:
                    done.append((future, call(), None))
                except BaseException as exc:
                    done.append((future, None, exc))
            now = time.monotonic()
            if now - flushed >= FLUSH_SECONDS or index == len(jobs) - 1:
                self._loop.call_soon_threadsafe(self._settle, done)
                done, flushed = [], now

    def _settle(self, done: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
        with self._ready:
            self.running -= len(done)
        for future, result, error in done:
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
