"""The controller's pure half: `plan(desired, observed)` returns the actions that close the gap.

Everything the runtime does to replicas comes out of here: scaling, crash restarts with backoff,
replacing hung replicas, rolling updates and deletes. `plan` is idempotent: while an action is under
way the observed state shows it (a replica `starting`, `draining`, `crash-looping`), so calling it again
on every tick asks for nothing twice.

Rolling updates follow Kubernetes: while one runs, at least `desired - max_unavailable` replicas stay ready
and at most `desired + max_surge` run (draining ones not counted). Old replicas drain as soon as enough
others are ready, new ones start as far as the surge allows. So a version that never becomes ready keeps
at least `desired - max_unavailable` old replicas serving, and every one of them when `max_unavailable`
rounds to 0 (as 25% of fewer than 4 replicas does).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace

from shipyard.runtime.local.types import (
    LIVE_STATES,
    Action,
    Backoff,
    Desired,
    DesiredAPI,
    Drain,
    Fail,
    Forget,
    Kill,
    Observed,
    ReplicaState,
    ReplicaStatus,
    Restart,
    Start,
    Timing,
)
from shipyard.spec.units import resolve_count_or_percent

_DEFAULT_TIMING = Timing()
_KEEP_FIRST = (ReplicaState.ready, ReplicaState.starting, ReplicaState.crash_looping, ReplicaState.crashed)


def plan(desired: Desired, observed: Observed, timing: Timing = _DEFAULT_TIMING) -> list[Action]:
    """The actions that move what runs (`observed`) towards what should run (`desired`), API by API."""
    by_api: dict[str, list[ReplicaStatus]] = defaultdict(list)
    for replica in sorted(observed.replicas, key=lambda r: (r.started_at, r.id)):
        by_api[replica.api].append(replica)
    names = sorted({api.name for api in desired.apis} | set(by_api))
    actions: list[Action] = []
    for name in names:
        actions += _plan_api(desired.get(name), by_api[name], observed.now, timing)
    return actions


def _plan_api(
    desired: DesiredAPI | None, replicas: Sequence[ReplicaStatus], now: float, timing: Timing
) -> list[Action]:
    actions: list[Action] = []
    live: list[ReplicaStatus] = []
    patience = desired or DesiredAPI("", "", 0)
    for replica in replicas:
        actions += _settle(replica, now, timing)
        failure = _failure(replica, now, patience)
        if failure is not None:
            actions.append(Fail(replica.id, failure))
            replica = replace(replica, state=ReplicaState.crashed, last_error=failure, exited_at=now)
        if replica.state in LIVE_STATES:
            live.append(replica)
    if desired is None:
        return actions + [_remove(replica, "API deleted") for replica in live]
    return actions + _converge(desired, live, now, timing)


def _settle(replica: ReplicaStatus, now: float, timing: Timing) -> list[Action]:
    """Finish replicas on their way out: forget the stopped, kill those that overstay their drain."""
    if replica.state is ReplicaState.stopped:
        return [Forget(replica.id, "stopped")]
    if replica.state is ReplicaState.draining and replica.draining_since is not None:
        # it waits up to its API's timeout for the gateway's requests, then has its grace period to finish
        allowed = replica.request_timeout + replica.grace_period + timing.kill_margin
        if now - replica.draining_since > allowed:
            return [Kill(replica.id, f"still draining {allowed:g}s after it was told to stop")]
    return []


def _failure(replica: ReplicaStatus, now: float, api: DesiredAPI) -> str | None:
    """Why a running replica counts as failed, or None while it is fine."""
    if replica.state is ReplicaState.starting and now - replica.started_at > api.startup_timeout:
        return f"not ready {api.startup_timeout:g}s after it started (startup_timeout)"
    if replica.state is ReplicaState.ready:
        last_answer = replica.healthy_at if replica.healthy_at is not None else replica.started_at
        if now - last_answer > api.health_timeout:
            return f"stopped answering health checks for {now - last_answer:.0f}s"
    return None


def _converge(desired: DesiredAPI, live: Sequence[ReplicaStatus], now: float, timing: Timing) -> list[Action]:
    current = sorted(
        (r for r in live if r.version == desired.version),
        key=lambda r: _KEEP_FIRST.index(r.state),
    )
    kept, surplus = current[: desired.replicas], current[desired.replicas :]
    old = [r for r in live if r.version != desired.version]
    old_ready = [r for r in old if r.state is ReplicaState.ready]
    actions: list[Action] = [_remove(r, f"scale down to {desired.replicas}") for r in surplus]
    actions += [_remove(r, f"replaced by version {desired.version}") for r in old if r.state is not ReplicaState.ready]
    actions += _recover(kept, now, timing)
    surge, unavailable = _budgets(desired)
    ready = sum(r.state is ReplicaState.ready for r in kept) + len(old_ready)
    drains = max(0, min(len(old_ready), ready - (desired.replicas - unavailable)))
    actions += [Drain(r.id, _drain_reason(desired, kept)) for r in old_ready[:drains]]
    running = len(kept) + len(old_ready) - drains
    starts = max(0, min(desired.replicas - len(kept), desired.replicas + surge - running))
    reason = f"roll out version {desired.version}" if old else f"scale up to {desired.replicas}"
    actions += [Start(desired.name, desired.version, reason) for _ in range(starts)]
    return actions


def _budgets(desired: DesiredAPI) -> tuple[int, int]:
    """(surge, unavailable): how many replicas may run above, and be missing below, the desired count."""
    total = desired.replicas
    surge = resolve_count_or_percent(desired.strategy.max_surge, total, round_up=True)
    unavailable = resolve_count_or_percent(desired.strategy.max_unavailable, total, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1  # as in Kubernetes: both rounding to 0 would block the update
    return surge, unavailable


def _drain_reason(desired: DesiredAPI, kept: Sequence[ReplicaStatus]) -> str:
    new_ready = sum(r.state is ReplicaState.ready for r in kept)
    return f"replaced by version {desired.version} ({new_ready}/{desired.replicas} of it ready)"


def _recover(replicas: Iterable[ReplicaStatus], now: float, timing: Timing) -> list[Action]:
    """Crashed replicas wait out their backoff; crash-looping ones whose time has come start again."""
    actions: list[Action] = []
    for replica in replicas:
        if replica.state is ReplicaState.crashed:
            actions.append(_backoff(replica, now, timing))
        elif replica.state is ReplicaState.crash_looping and (replica.restart_at or now) <= now:
            actions.append(Restart(replica.id, f"restart after {replica.restarts} crash(es) in a row"))
    return actions


def _backoff(replica: ReplicaStatus, now: float, timing: Timing) -> Backoff:
    exited_at = replica.exited_at if replica.exited_at is not None else now
    ran_for = exited_at - replica.started_at
    attempt = 1 if ran_for >= timing.backoff_reset else replica.restarts + 1
    delay = min(timing.backoff_base * 2 ** (attempt - 1), timing.backoff_max)
    reason = f"crashed ({replica.last_error or 'no error recorded'}); restart #{attempt} in {delay:g}s"
    return Backoff(replica.id, attempt, exited_at + delay, reason)


def _remove(replica: ReplicaStatus, reason: str) -> Action:
    """Drain a replica that has a process; forget one that has none."""
    if replica.state in (ReplicaState.crashed, ReplicaState.crash_looping):
        return Forget(replica.id, reason)
    return Drain(replica.id, reason)
