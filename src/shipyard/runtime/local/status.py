"""What `shipyard get` says about an API: its phase, replica counts, and why it fails when it does. Pure.

A replica is *failing* when it crashed and has not been ready since: crashed, waiting out its backoff, or
starting again after a crash. The phase weighs that against what still serves: one replica killed while
another serves is `scaling` (with the reason), not `crash-looping`; a version counts as broken only once
a replica of it crashed `BROKEN_AFTER` times in a row, so one crash never fails a deploy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from shipyard.runtime.local.types import LIVE_STATES, DesiredAPI, ReplicaState, ReplicaStatus

BROKEN_AFTER = 2
"""Crashes in a row after which a replica's version counts as broken rather than unlucky."""


class Phase(StrEnum):
    live = "live"  #: every desired replica is ready and runs the current version
    scaling = "scaling"  #: replicas start, restart or drain to reach the desired count
    updating = "updating"  #: a new version rolls out; old replicas serve until it is ready
    stalled = "update stalled"  #: the new version keeps failing; the old replicas keep serving
    crash_looping = "crash-looping"  #: the current version keeps crashing and nothing else serves it


@dataclass(frozen=True)
class APIStatus:
    name: str
    phase: Phase
    desired: int
    ready: int
    """Replicas that take traffic, of any version."""
    up_to_date: int
    """Ready replicas of the current version."""
    message: str | None = None
    """Why replicas fail: the last error of the newest failing replica of the current version."""


def is_failing(replica: ReplicaStatus) -> bool:
    """Crashed and not ready since: crashed, waiting to restart, or starting again after a crash."""
    if replica.state in (ReplicaState.crashed, ReplicaState.crash_looping):
        return True
    return replica.state is ReplicaState.starting and replica.restarts > 0


def summarize(desired: DesiredAPI, replicas: Sequence[ReplicaStatus]) -> APIStatus:
    live = [r for r in replicas if r.state in LIVE_STATES]
    ready = [r for r in live if r.state is ReplicaState.ready]
    up_to_date = sum(r.version == desired.version for r in ready)
    failing = [r for r in live if r.version == desired.version and is_failing(r)]
    is_broken = up_to_date == 0 and any(r.restarts >= BROKEN_AFTER for r in failing)
    has_old = any(r.version != desired.version for r in live)
    if is_broken and ready:
        phase = Phase.stalled  # only old replicas serve
    elif is_broken:
        phase = Phase.crash_looping
    elif has_old:
        phase = Phase.updating
    elif up_to_date == desired.replicas and len(live) == desired.replicas and len(replicas) == len(live):
        phase = Phase.live
    else:
        phase = Phase.scaling
    return APIStatus(desired.name, phase, desired.replicas, len(ready), up_to_date, _why(desired, failing))


def is_news(recorded: Phase | None, status: APIStatus) -> bool:
    """Whether `status` deserves a phase event after `recorded`, the last phase one was written for.

    Not the `scaling` of a replica that crashed and restarts: its crashed and restarting events say that,
    and a replica that flaps next to a serving one would write two more events every cycle.
    """
    if status.phase is recorded:
        return False
    return not (status.phase is Phase.scaling and status.message is not None)


def _why(desired: DesiredAPI, failing: Sequence[ReplicaStatus]) -> str | None:
    if not failing:
        return None
    newest = max(failing, key=lambda r: (r.exited_at or 0.0, r.id))
    doing = {
        ReplicaState.crashed: "crashed",
        ReplicaState.crash_looping: "waits to restart",
        ReplicaState.starting: "is restarting",
    }.get(newest.state, newest.state.value)
    crashes = f" after {newest.restarts} crash(es) in a row" if newest.restarts else ""
    error = newest.last_error or "no error recorded"
    return f"version {desired.version} replica {newest.id} {doing}{crashes}: {error}"
