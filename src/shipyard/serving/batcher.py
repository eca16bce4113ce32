"""Dynamic batching: gather concurrent requests until `max_batch_size` or `max_wait_ms`, predict once, split.

A batch slot (one of `max_concurrency`) is taken before a batch is gathered, so while every slot is busy
requests pile up and the next batch leaves fuller. A batch whose prediction raises fails every request in it.

Admission (`is_full`): requests in running batches don't wait; the others do. At most `max_queue_length`
wait while every slot runs a batch, and each idle slot adds room for the one batch it is about to fill:
waiting < max_queue_length + idle_slots * max_batch_size.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shipyard.errors import PredictionFailed
from shipyard.serving.metrics import ReplicaMetrics

log = logging.getLogger("shipyard.batcher")


@dataclass
class BatchItem:
    payload: Any
    headers: Any
    query: Any
    request_id: str
    future: asyncio.Future[Any]
    enqueued: float = field(default_factory=time.monotonic)


RunBatch = Callable[[list[BatchItem]], list[Any]]
"""Runs in a worker thread: one result (or exception instance) per item, in order."""


class Batcher:
    def __init__(
        self,
        run_batch: RunBatch,
        *,
        max_batch_size: int,
        max_wait_ms: float,
        slots: int,
        submit_to_thread: Callable[..., asyncio.Future[Any]],
        metrics: ReplicaMetrics,
    ) -> None:
        self._run_batch = run_batch
        self._max_size = max_batch_size
        self._max_wait = max_wait_ms / 1000
        self._slots = asyncio.Semaphore(slots)
        self._to_thread = submit_to_thread
        self._metrics = metrics
        self._queue: asyncio.Queue[BatchItem] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._slot_count = slots
        self.running = 0
        """Requests in batches handed to a worker and not yet settled."""
        self.busy = 0
        """Batches handed to a worker and not yet settled."""

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def is_full(self, admitted: int, max_queue_length: int) -> bool:
        """Whether one more request would wait beyond the queue (see the module's docstring)."""
        waiting = admitted - self.running
        return waiting >= max_queue_length + (self._slot_count - self.busy) * self._max_size

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def submit(self, payload: Any, headers: Any, query: Any, request_id: str) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(BatchItem(payload, headers, query, request_id, future))
        return future

    async def _loop(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                batch = await self._gather()
            except BaseException:
                self._slots.release()
                raise
            self._dispatch(batch)

    async def _gather(self) -> list[BatchItem]:
        batch = [await self._next_live()]
        deadline = batch[0].enqueued + self._max_wait
        while len(batch) < self._max_size:
            if self._queue.empty():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    async with asyncio.timeout(remaining):
                        item = await self._queue.get()
                except TimeoutError:
                    break
            else:
                item = self._queue.get_nowait()
            if not item.future.done():  # a caller that timed out or went away needs no prediction
                batch.append(item)
        return batch

    async def _next_live(self) -> BatchItem:
        while True:
            item = await self._queue.get()
            if not item.future.done():
                return item

    def _dispatch(self, batch: list[BatchItem]) -> None:
        now = time.monotonic()
        self._metrics.batch_size.observe(len(batch))
        for item in batch:
            self._metrics.batch_wait.observe(now - item.enqueued)
        self.running += len(batch)
        self.busy += 1
        future = self._to_thread(self._run_batch, batch)
        future.add_done_callback(lambda done: self._settle(batch, done))

    def _settle(self, batch: list[BatchItem], done: asyncio.Future[Any]) -> None:
        self.running -= len(batch)
        self.busy -= 1
        self._slots.release()
        error = PredictionFailed("the batch was cancelled") if done.cancelled() else done.exception()
        results: list[Any] = [error] * len(batch) if error is not None else done.result()
        if error is None and len(results) != len(batch):
            log.error(
                "predict_batch returned %d results for a batch of %d requests (%s); it must return one per payload",
                len(results),
                len(batch),
                ",".join(item.request_id for item in batch),
            )
            results = [PredictionFailed("predict_batch returned the wrong number of results")] * len(batch)
        for item, result in zip(batch, results, strict=True):
            if item.future.done():
                continue
            if isinstance(result, BaseException):
                item.future.set_exception(result)
            else:
                item.future.set_result(result)
