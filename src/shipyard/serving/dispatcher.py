"""Hands single predictions to worker threads, so the event loop never runs a model.

A worker takes its share of the predictions waiting when it wakes and answers them in small groups: under load the
loop and the workers trade one wake-up per group instead of one per request (with a GIL-bound model the
per-request hand-off otherwise costs more than a small model's prediction). Results are flushed at least
every `FLUSH_SECONDS`, so grouping never delays an answer by more than that.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

FLUSH_SECONDS = 0.0005
Job = tuple[Callable[[], Any], asyncio.Future[Any]]


class Dispatcher:
    def __init__(self, workers: int, loop: asyncio.AbstractEventLoop, name: str = "predict") -> None:
        self._loop = loop
        self._pending: queue.SimpleQueue[Job | None] = queue.SimpleQueue()  # C-level put/get: cheap hand-off
        self._workers = workers
        self._count_lock = threading.Lock()
        self.running = 0
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{index}", daemon=True) for index in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def waiting(self) -> int:
        return self._pending.qsize()

    def submit(self, call: Callable[[], Any]) -> asyncio.Future[Any]:
        """Queue `call` for a worker thread; its return value (or exception) settles the future."""
        future: asyncio.Future[Any] = self._loop.create_future()
        self._pending.put((call, future))
        return future

    def close(self) -> None:
        for _ in self._threads:
            self._pending.put(None)

    def _work(self) -> None:
        while True:
            first = self._pending.get()
            if first is None:
                return
            jobs = [first]
            share = -(-self._pending.qsize() // self._workers)  # leave work for idle siblings
            while len(jobs) <= share:
                try:
                    job = self._pending.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._pending.put(None)  # another worker's stop signal: hand it back after this group
                    break
                jobs.append(job)
            with self._count_lock:
                self.running += len(jobs)
            self._run(jobs)

    def _run(self, jobs: list[Job]) -> None:
        done: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        flushed = time.monotonic()
        for index, (call, future) in enumerate(jobs):
            if future.done():  # the caller timed out or left while this waited: no need to predict
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
        with self._count_lock:
            self.running -= len(done)
        for future, result, error in done:
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
