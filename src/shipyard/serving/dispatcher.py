"""Hands single predictions to worker threads, so the event loop never runs a model.

Under load a waking worker also takes its share of the predictions waiting and answers them in small
groups: the loop and the workers trade one wake-up per group instead of one per request (with a GIL-bound
model the per-request hand-off otherwise costs more than a small model's prediction). A worker groups only
when no sibling is idle (an idle one would start the next prediction at once) and only after a quick
prediction (grouping slow ones would run them one after another while a sibling may come free). Results
are flushed at least every `FLUSH_SECONDS`, so grouping never delays an answer by more than that.
`running` counts the predictions being run, one by one, not the groups taken.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

FLUSH_SECONDS = 0.0005
QUICK_SECONDS = 0.001
"""A prediction under this is cheap enough that the hand-off matters and grouping pays."""
Job = tuple[Callable[[], Any], asyncio.Future[Any]]


class Dispatcher:
    def __init__(self, workers: int, loop: asyncio.AbstractEventLoop, name: str = "predict") -> None:
        self._loop = loop
        self._pending: queue.SimpleQueue[Job | None] = queue.SimpleQueue()  # C-level put/get: cheap hand-off
        self._workers = workers
        # Each worker writes only its own slot (no lock on the hot path); the loop thread alone counts settled.
        self._idle = [True] * workers
        self._started = [0] * workers
        self._settled = 0
        self._threads = [
            threading.Thread(target=self._work, args=(index,), name=f"{name}-{index}", daemon=True)
            for index in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def waiting(self) -> int:
        return self._pending.qsize()

    @property
    def running(self) -> int:
        """Predictions a worker has started and whose result has not reached the loop yet."""
        return sum(self._started) - self._settled

    def submit(self, call: Callable[[], Any]) -> asyncio.Future[Any]:
        """Queue `call` for a worker thread; its return value (or exception) settles the future."""
        future: asyncio.Future[Any] = self._loop.create_future()
        self._pending.put((call, future))
        return future

    def close(self) -> None:
        for _ in self._threads:
            self._pending.put(None)

    def _work(self, index: int) -> None:
        quick = True
        alone = self._workers == 1  # no sibling could run what this worker leaves: always group
        while True:
            first = self._pending.get()
            self._idle[index] = False
            if first is None:
                return
            jobs = [first]
            if (alone or quick) and self._pending.qsize() and True not in self._idle:
                self._take_share(jobs)
            quick = self._run(jobs, index)

    def _take_share(self, jobs: list[Job]) -> None:
        share = -(-self._pending.qsize() // self._workers)  # leave work for siblings that finish meanwhile
        while len(jobs) <= share:
            try:
                job = self._pending.get_nowait()
            except queue.Empty:
                return
            if job is None:
                self._pending.put(None)  # another worker's stop signal: hand it back after this group
                return
            jobs.append(job)

    def _run(self, jobs: list[Job], index: int) -> bool:
        """Run a group, flushing results to the loop as it goes; whether its last prediction was quick."""
        done: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        flushed = now = time.monotonic()
        for position, (call, future) in enumerate(jobs):
            started = now
            self._started[index] += 1
            if future.done():  # the caller timed out or left while this waited: no need to predict
                done.append((future, None, None))
            else:
                try:
                    done.append((future, call(), None))
                except BaseException as exc:
                    done.append((future, None, exc))
            now = time.monotonic()
            last = position == len(jobs) - 1
            if last:
                self._idle[index] = True  # before the loop hears of it: what the loop sends next finds it idle
            if last or now - flushed >= FLUSH_SECONDS:
                self._loop.call_soon_threadsafe(self._settle, done)
                done, flushed = [], now
        return now - started < QUICK_SECONDS

    def _settle(self, done: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
        self._settled += len(done)
        for future, result, error in done:
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
