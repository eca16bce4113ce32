"""The dispatcher runs calls on worker threads and settles each caller's future, in order, exactly once."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from shipyard.serving.dispatcher import Dispatcher


async def _with_dispatcher(workers: int) -> Dispatcher:
    return Dispatcher(workers, asyncio.get_running_loop())


def test_results_and_errors_reach_their_callers() -> None:
    async def scenario() -> None:
        dispatcher = await _with_dispatcher(1)
        futures = [dispatcher.submit(lambda i=i: i * 2) for i in range(50)]
        failing = dispatcher.submit(lambda: 1 / 0)
        assert await asyncio.gather(*futures) == [i * 2 for i in range(50)]
        with pytest.raises(ZeroDivisionError):
            await failing
        assert dispatcher.running == 0 and dispatcher.waiting == 0
        dispatcher.close()

    asyncio.run(scenario())


def test_calls_never_run_on_the_event_loop_thread() -> None:
    async def scenario() -> None:
        dispatcher = await _with_dispatcher(2)
        loop_thread = threading.get_ident()
        threads = await asyncio.gather(*(dispatcher.submit(threading.get_ident) for _ in range(20)))
        assert loop_thread not in threads
        dispatcher.close()

    asyncio.run(scenario())


def test_at_most_workers_calls_run_at_once() -> None:
    active, peak, lock = [0], [0], threading.Lock()

    def work() -> None:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.02)
        with lock:
            active[0] -= 1

    async def scenario() -> None:
        dispatcher = await _with_dispatcher(3)
        await asyncio.gather(*(dispatcher.submit(work) for _ in range(12)))
        dispatcher.close()

    asyncio.run(scenario())
    assert peak[0] == 3


def test_a_cancelled_caller_is_skipped_if_it_has_not_started() -> None:
    ran: list[str] = []
    gate = threading.Event()

    async def scenario() -> None:
        dispatcher = await _with_dispatcher(1)
        blocker = dispatcher.submit(lambda: gate.wait(5))
        await asyncio.sleep(0.05)  # the worker is now inside the blocker
        abandoned = dispatcher.submit(lambda: ran.append("abandoned"))
        kept = dispatcher.submit(lambda: ran.append("kept"))
        abandoned.cancel()
        gate.set()
        await asyncio.gather(blocker, kept)
        dispatcher.close()

    asyncio.run(scenario())
    assert ran == ["kept"]


def test_idle_workers_take_waiting_calls_rather_than_one_worker_running_them_in_turn() -> None:
    """Each call waits for all of them to be running at once: a worker that took a sibling's call along with
    its own would leave the barrier one short and break it."""
    workers = 4
    barrier = threading.Barrier(workers, timeout=10)

    def meet() -> str:
        barrier.wait()
        return threading.current_thread().name

    async def scenario() -> None:
        dispatcher = await _with_dispatcher(workers)
        for _ in range(10):  # each round starts with every worker idle
            names = await asyncio.gather(*(dispatcher.submit(meet) for _ in range(workers)))
            assert len(set(names)) == workers
        dispatcher.close()

    asyncio.run(scenario())


def test_running_counts_calls_being_run_not_calls_taken_along() -> None:
    gate = threading.Event()
    started = threading.Semaphore(0)

    def block() -> None:
        started.release()
        gate.wait(10)

    async def scenario() -> tuple[int, int]:
        dispatcher = await _with_dispatcher(1)
        futures = [dispatcher.submit(block) for _ in range(3)]  # queued before the worker wakes
        await asyncio.to_thread(started.acquire)
        running = dispatcher.running
        gate.set()
        await asyncio.gather(*futures)
        settled = dispatcher.running
        dispatcher.close()
        return running, settled

    assert asyncio.run(scenario()) == (1, 0)
