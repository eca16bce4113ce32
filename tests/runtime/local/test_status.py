from __future__ import annotations

from typing import Any

from shipyard.runtime.local.status import APIStatus, Phase, is_news, summarize
from shipyard.runtime.local.types import DesiredAPI, ReplicaState, ReplicaStatus

READY = ReplicaState.ready
DESIRED = DesiredAPI("iris", "v2", 2)


def replica(id: str, state: ReplicaState = READY, version: str = "v2", **fields: Any) -> ReplicaStatus:
    return ReplicaStatus(id=id, api="iris", version=version, state=state, started_at=0.0, **fields)


def test_all_ready_and_current_is_live() -> None:
    status = summarize(DESIRED, [replica("a"), replica("b")])
    assert status == APIStatus("iris", Phase.live, desired=2, ready=2, up_to_date=2)


def test_missing_or_extra_replicas_are_scaling() -> None:
    assert summarize(DESIRED, [replica("a"), replica("b", ReplicaState.starting)]).phase is Phase.scaling
    assert summarize(DESIRED, [replica("a")]).phase is Phase.scaling
    draining = replica("c", ReplicaState.draining)
    assert summarize(DESIRED, [replica("a"), replica("b"), draining]).phase is Phase.scaling


def test_old_replicas_serving_next_to_new_ones_is_an_update() -> None:
    status = summarize(DESIRED, [replica("a", version="v1"), replica("b", version="v1"), replica("c")])
    assert (status.phase, status.ready, status.up_to_date, status.message) == (Phase.updating, 3, 1, None)


def test_a_failing_new_version_stalls_the_update_and_says_why() -> None:
    failing = replica(
        "c",
        ReplicaState.crash_looping,
        restarts=3,
        exited_at=9.0,
        last_error="exited with code 1: bad weights",
    )
    status = summarize(DESIRED, [replica("a", version="v1"), replica("b", version="v1"), failing])
    assert (status.phase, status.ready, status.up_to_date) == (Phase.stalled, 2, 0)
    assert status.message == (
        "version v2 replica c waits to restart after 3 crash(es) in a row: exited with code 1: bad weights"
    )


def test_a_failing_version_with_nothing_else_is_crash_looping() -> None:
    older = replica("a", ReplicaState.crashed, exited_at=1.0, last_error="old error")
    newer = replica("b", ReplicaState.crash_looping, restarts=2, exited_at=5.0, last_error="new error")
    status = summarize(DESIRED, [older, newer])
    assert status.phase is Phase.crash_looping
    assert (status.message or "").endswith("new error")


def test_one_killed_replica_while_another_serves_is_scaling_and_says_why() -> None:
    killed = replica("b", ReplicaState.crash_looping, restarts=1, exited_at=5.0, last_error="killed by signal 9")
    status = summarize(DESIRED, [replica("a"), killed])
    assert (status.phase, status.ready, status.up_to_date) == (Phase.scaling, 1, 1)
    assert status.message == "version v2 replica b waits to restart after 1 crash(es) in a row: killed by signal 9"


def test_a_replica_that_keeps_crashing_while_another_serves_is_not_crash_looping() -> None:
    flapping = replica("b", ReplicaState.crash_looping, restarts=7, exited_at=5.0, last_error="segfault")
    assert summarize(DESIRED, [replica("a"), flapping]).phase is Phase.scaling


def test_a_single_crash_is_not_yet_a_broken_version() -> None:
    first = replica("a", ReplicaState.crash_looping, restarts=1, exited_at=2.0, last_error="killed by signal 9")
    status = summarize(DesiredAPI("iris", "v2", 1), [first])
    assert status.phase is Phase.scaling and "killed by signal 9" in (status.message or "")


def test_a_crash_looping_api_stays_crash_looping_and_says_why_while_it_restarts() -> None:
    restarting = replica("a", ReplicaState.starting, restarts=3, exited_at=4.0, last_error="exited with code 1: boom")
    status = summarize(DesiredAPI("iris", "v2", 1), [restarting])
    assert status.phase is Phase.crash_looping
    assert status.message == "version v2 replica a is restarting after 3 crash(es) in a row: exited with code 1: boom"


def test_a_replica_that_came_back_is_not_failing() -> None:
    recovered = replica("a", restarts=2, last_error="killed by signal 9")
    assert summarize(DesiredAPI("iris", "v2", 1), [recovered]) == APIStatus("iris", Phase.live, 1, 1, 1)


def test_a_crash_of_an_old_version_does_not_stall_the_update() -> None:
    old_crash = replica("a", ReplicaState.crash_looping, version="v1", last_error="boom")
    assert summarize(DESIRED, [old_crash, replica("b")]).phase is Phase.updating


def test_a_flapping_replica_next_to_a_serving_one_writes_no_phase_events() -> None:
    killed = replica("b", ReplicaState.crash_looping, restarts=1, exited_at=5.0, last_error="killed by signal 9")
    flapping = summarize(DESIRED, [replica("a"), killed])
    assert not is_news(Phase.live, flapping)  # its crashed/restarting events say it
    assert not is_news(Phase.live, summarize(DESIRED, [replica("a"), replica("b")]))  # back: nothing new
    assert is_news(Phase.live, summarize(DESIRED, [replica("a")]))  # scaling for another reason is news
    broken = replica("b", ReplicaState.crash_looping, restarts=2, exited_at=5.0, last_error="boom")
    assert is_news(Phase.live, summarize(DesiredAPI("iris", "v2", 1), [broken]))
