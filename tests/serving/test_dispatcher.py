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
