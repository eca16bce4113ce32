"""The events the control loop writes for what it does and sees: actions taken, phases reached. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

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


def phases_of(kinds: Mapping[str, str]) -> dict[str, Phase]:
    """Per API, the phase its newest phase event (kind by API, see `state.last_of_kinds`) recorded."""
    by_kind = {kind: phase for phase, kind in _PHASE_KINDS.items()}
    return {api: by_kind[kind] for api, kind in kinds.items() if kind in by_kind}


PHASE_KINDS = tuple(_PHASE_KINDS.values())
"""Kinds of the events that record a change of phase."""


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
    text = (
        f"{status.phase.value}: version {api.version}; {status.ready} ready, {status.up_to_date} up to date, "
        f"{api.replicas} desired"
    )
    if status.message:
        text += f"; {status.message}"
    return Event(now, api.name, _PHASE_KINDS[status.phase], text)
