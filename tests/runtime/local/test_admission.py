"""Admission in the gateway: per-replica limits, the bounded queue, refusals at once, hand-off of freed slots."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from shipyard.runtime.local.admission import APIRoute, Lane, Overloaded


def route(replicas: int, *, limit: int = 1, queue: int = 2, expecting: bool = False, timeout: float = 5) -> APIRoute:
    urls = {f"r{i}": f"http://127.0.0.1:{10000 + i}" for i in range(replicas)}
    return APIRoute("api", limit, queue, timeout, urls, expecting)


def test_least_in_flight_within_the_per_replica_limit() -> None:
    lane = Lane(route(2, limit=2), random.Random(0))
    first, second = lane.try_admit(), lane.try_admit()
    assert first is not None and second is not None and first.id != second.id
    taken = [lane.try_admit() for _ in range(2)]
    assert all(backend is not None for backend in taken)
    assert lane.try_admit() is None  # 2 replicas x max_concurrency 2, and not one more
    assert lane.in_flight == 4
    assert {b.id: b.in_flight for b in lane.backends.values()} == {"r0": 2, "r1": 2}


def test_a_waiting_retry_never_takes_the_replica_it_must_avoid() -> None:
    async def scenario() -> None:
        lane = Lane(route(2, queue=4), random.Random(0))
        r0, r1 = lane.try_admit(), lane.try_admit()
        assert r0 is not None and r1 is not None
        retry = asyncio.ensure_future(lane.admit(exclude={r0.id}))  # failed on r0: must go elsewhere
        later = asyncio.ensure_future(lane.admit())
        await asyncio.sleep(0)
        lane.release(r0)  # the replica the retry avoids frees first: the next waiter takes it
        assert (await later).id == r0.id and not retry.done()
        lane.release(r1)
        assert (await retry).id == r1.id

    asyncio.run(scenario())


def test_queue_holds_max_queue_length_per_ready_replica_then_refuses_at_once() -> None:
    async def scenario() -> None:
        lane = Lane(route(1, queue=2), random.Random(0))
        held = [lane.try_admit()]
        busy = held[0]
        assert busy is not None and all(held)
        waiting = [asyncio.ensure_future(lane.admit()) for _ in range(2)]
        await asyncio.sleep(0)
        assert lane.queued == 2
        with pytest.raises(Overloaded, match="queue of 2 full"):
            await lane.admit()
        lane.release(busy)  # the oldest waiter takes the freed slot
        handed = await waiting[0]
        assert handed.id == "r0" and not waiting[1].done()
        lane.release(handed)
        lane.release(await waiting[1])
        for backend in held[1:]:
            assert backend is not None
            lane.release(backend)
        assert (lane.in_flight, lane.queued) == (0, 0)

    asyncio.run(scenario())


def test_no_ready_replica_refuses_unless_one_is_starting() -> None:
    async def scenario() -> None:
        with pytest.raises(Overloaded, match="no ready replica"):
            await Lane(route(0), random.Random(0)).admit()
        lane = Lane(route(0, expecting=True), random.Random(0))
        waiter = asyncio.ensure_future(lane.admit())
        await asyncio.sleep(0)
        lane.update(route(1))  # the replica became ready: the waiter gets it
        assert (await waiter).id == "r0"

    asyncio.run(scenario())


def test_a_removed_replica_finishes_its_requests_but_gets_no_new_ones() -> None:
    lane = Lane(route(2, limit=1), random.Random(0))
    taken = lane.try_admit()
    assert taken is not None
    remaining = {"r0", "r1"} - {taken.id}
    lane.update(APIRoute("api", 1, 2, 5, {r: f"http://127.0.0.1:{10000 + int(r[1])}" for r in remaining}))
    assert taken.id in lane.backends and not lane.backends[taken.id].is_routable
    others = [lane.try_admit()]
    assert all(other is not None and other.id in remaining for other in others)
    assert lane.try_admit() is None
    lane.release(taken)
    assert taken.id not in lane.backends


def test_average_load_integrates_in_flight_and_queued_over_time() -> None:
    lane = Lane(route(1, limit=4), random.Random(0))
    lane.average_load()
    for _ in range(3):
        lane.try_admit()
    time.sleep(0.05)  # the admissions take microseconds of the 50 ms measured
    assert lane.average_load() == pytest.approx(3.0, rel=0.05)


def test_a_freed_slot_starts_the_waiting_request_at_once() -> None:
    async def scenario() -> None:
        lane = Lane(route(1, queue=2), random.Random(0))
        busy = lane.try_admit()
        assert busy is not None
        started: list[str] = []
        waiting = asyncio.ensure_future(lane.admit(on_admit=lambda backend: started.append(backend.id)))
        await asyncio.sleep(0)
        lane.release(busy)
        assert started == ["r0"]  # sent from the release itself, before the waiting task even runs
        assert (await waiting).id == "r0" and lane.in_flight == 1

    asyncio.run(scenario())
