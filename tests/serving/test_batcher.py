"""The batcher on its own: batches fill to max_batch_size or leave at max_wait_ms, and skip abandoned callers."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shipyard.serving.batcher import Batcher, BatchItem
from shipyard.serving.metrics import ReplicaMetrics


def _batcher(seen: list[list[Any]], *, size: int, wait_ms: float, delay: float = 0.0) -> Batcher:
    pool = ThreadPoolExecutor(1)
    loop = asyncio.get_running_loop()

    def run(batch: list[BatchItem]) -> list[Any]:
        seen.append([item.payload for item in batch])
        time.sleep(delay)
        return [item.payload * 10 for item in batch]

    batcher = Batcher(
        run,
        max_batch_size=size,
        max_wait_ms=wait_ms,
        slots=1,
        submit_to_thread=lambda fn, *a: loop.run_in_executor(pool, fn, *a),
        metrics=ReplicaMetrics("t"),
    )
    batcher.start()
    return batcher


def test_concurrent_submissions_share_a_batch_and_each_gets_its_result() -> None:
    seen: list[list[Any]] = []

    async def scenario() -> list[Any]:
        batcher = _batcher(seen, size=4, wait_ms=1000)
        results = await asyncio.gather(*(batcher.submit(i, None, None, str(i)) for i in range(8)))
        await batcher.stop()
        return results

    assert asyncio.run(scenario()) == [i * 10 for i in range(8)]
    assert seen == [[0, 1, 2, 3], [4, 5, 6, 7]]  # full batches leave at once, long before max_wait


def test_a_partial_batch_leaves_after_max_wait() -> None:
    seen: list[list[Any]] = []

    async def scenario() -> float:
        batcher = _batcher(seen, size=64, wait_ms=30)
        started = time.monotonic()
        await asyncio.gather(batcher.submit(1, None, None, "a"), batcher.submit(2, None, None, "b"))
        elapsed = time.monotonic() - started
        await batcher.stop()
        return elapsed

    elapsed = asyncio.run(scenario())
    assert seen == [[1, 2]]
    assert elapsed >= 0.03


def test_requests_pile_up_while_the_only_slot_is_busy() -> None:
    seen: list[list[Any]] = []

    async def scenario() -> None:
        batcher = _batcher(seen, size=16, wait_ms=0, delay=0.1)
        first = batcher.submit(0, None, None, "0")
        await asyncio.sleep(0.02)  # batch [0] is running; the next ones wait for the slot together
        await asyncio.gather(first, *(batcher.submit(i, None, None, str(i)) for i in range(1, 6)))
        await batcher.stop()

    asyncio.run(scenario())
    assert seen == [[0], [1, 2, 3, 4, 5]]


def test_abandoned_callers_are_left_out() -> None:
    seen: list[list[Any]] = []

    async def scenario() -> None:
        batcher = _batcher(seen, size=8, wait_ms=0, delay=0.1)
        first = batcher.submit(0, None, None, "0")
        await asyncio.sleep(0.02)
        gone = batcher.submit(1, None, None, "1")
        kept = batcher.submit(2, None, None, "2")
        gone.cancel()
        await asyncio.gather(first, kept)
        await batcher.stop()

    asyncio.run(scenario())
    assert seen == [[0], [2]]


def test_admission_counts_waiting_requests_against_the_queue() -> None:
    """max_concurrency 1, max_batch_size 4, max_queue_length 2: while the slot runs a batch, 2 may wait;
    while it is idle, a batch of 4 may fill on top of them."""
    seen: list[list[Any]] = []

    async def scenario() -> list[bool]:
        batcher = _batcher(seen, size=4, wait_ms=0, delay=0.3)
        idle = [batcher.is_full(admitted, 2) for admitted in (0, 5, 6)]
        running = batcher.submit(1, None, None, "1")
        while batcher.busy == 0:
            await asyncio.sleep(0.001)
        busy = [batcher.is_full(admitted, 2) for admitted in (1, 2, 3)]
        await running
        await batcher.stop()
        return idle + busy

    assert asyncio.run(scenario()) == [False, False, True, False, False, True]
