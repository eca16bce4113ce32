from __future__ import annotations

from typing import Any

from shipyard.runtime.local.status import APIStatus, Phase, summarize
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
    assert status.message == "version v2 replica c crash-looping after 3 restart(s): exited with code 1: bad weights"


def test_a_failing_version_with_nothing_else_is_crash_looping() -> None:
    older = replica("a", ReplicaState.crashed, exited_at=1.0, last_error="old error")
    newer = replica("b", ReplicaState.crash_looping, restarts=1, exited_at=5.0, last_error="new error")
    status = summarize(DESIRED, [older, newer])
    assert status.phase is Phase.crash_looping
    assert (status.message or "").endswith("new error")


def test_a_crash_of_an_old_version_does_not_stall_the_update() -> None:
    old_crash = replica("a", ReplicaState.crash_looping, version="v1", last_error="boom")
    assert summarize(DESIRED, [old_crash, replica("b")]).phase is Phase.updating
