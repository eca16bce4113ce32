"""The events the control loop writes for what it does and sees: actions taken, phases reached. Pure."""

from __future__ import annotations

from collections.abc import Iterable

from shipyard.runtime.local.state import Event
from shipyard.runtime.local.status import APIStatus, Phase
from shipyard.runtime.local.types import (
    Action,
    Backoff,
    DesiredAPI,
    Drain,
    Fail,
    Forget,
    Kill,
    Observed,
    Restart,
    Start,
)

_KINDS = {Drain: "draining", Kill: "killed", Fail: "failed", Backoff: "crashed", Restart: "restarting"}
_PHASE_KINDS = {
    Phase.live: "live",
    Phase.scaling: "scaling",
    Phase.updating: "updating",
    Phase.stalled: "update-stalled",
    Phase.crash_looping: "crash-looping",
}


def action_events(actions: Iterable[Action], observed: Observed) -> list[Event]:
    """One event per action, except forgetting a replica that stopped as told."""
    apis = {r.id: r.api for r in observed.replicas}
    events = []
    for action in actions:
        if isinstance(action, Start):
            events.append(Event(observed.now, action.api, "starting", f"start a replica: {action.reason}"))
            continue
        if isinstance(action, Forget) and action.reason == "stopped":
            continue
        kind = _KINDS.get(type(action), "removed")
        api = apis.get(action.replica, "")
        events.append(Event(observed.now, api, kind, f"replica {action.replica}: {action.reason}", action.replica))
    return events


def phase_event(api: DesiredAPI, status: APIStatus, now: float) -> Event:
    text = f"{status.phase.value}: version {api.version}, {status.up_to_date}/{api.replicas} up to date"
    if status.message:
        text += f"; {status.message}"
    return Event(now, api.name, _PHASE_KINDS[status.phase], text)
