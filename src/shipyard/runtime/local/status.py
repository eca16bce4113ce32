"""What `shipyard get` says about an API: its phase, replica counts, and why it fails when it does. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from shipyard.runtime.local.types import LIVE_STATES, DesiredAPI, ReplicaState, ReplicaStatus

_FAILING = (ReplicaState.crashed, ReplicaState.crash_looping)


class Phase(StrEnum):
    live = "live"  #: every desired replica is ready and runs the current version
    scaling = "scaling"  #: replicas start or drain to reach the desired count
    updating = "updating"  #: a new version rolls out; old replicas serve until it is ready
    stalled = "update stalled"  #: the new version fails; the old replicas keep serving
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
    """Why the API fails: the last error of its newest failing replica."""


def summarize(desired: DesiredAPI, replicas: Sequence[ReplicaStatus]) -> APIStatus:
    live = [r for r in replicas if r.state in LIVE_STATES]
    ready = [r for r in live if r.state is ReplicaState.ready]
    up_to_date = sum(r.version == desired.version for r in ready)
    failing = [r for r in live if r.version == desired.version and r.state in _FAILING]
    has_old = any(r.version != desired.version for r in live)
    message = _why(desired, failing)
    if failing:
        phase = Phase.stalled if has_old else Phase.crash_looping
    elif has_old:
        phase = Phase.updating
    elif up_to_date == desired.replicas and len(live) == desired.replicas and len(replicas) == len(live):
        phase = Phase.live
    else:
        phase = Phase.scaling
    return APIStatus(desired.name, phase, desired.replicas, len(ready), up_to_date, message)


def _why(desired: DesiredAPI, failing: Sequence[ReplicaStatus]) -> str | None:
    if not failing:
        return None
    newest = max(failing, key=lambda r: (r.exited_at or 0.0, r.id))
    restarts = f" after {newest.restarts} restart(s)" if newest.restarts else ""
    return f"version {desired.version} replica {newest.id} {newest.state.value}{restarts}: {newest.last_error}"
