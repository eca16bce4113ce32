from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from shipyard.runtime.local.controller import plan
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
)
from shipyard.spec.models import UpdateStrategy
from shipyard.spec.units import resolve_count_or_percent

NOW = 1_000.0
READY = ReplicaState.ready
STARTING = ReplicaState.starting


def replica(
    id: str, state: ReplicaState = READY, version: str = "v1", api: str = "iris", **fields: Any
) -> ReplicaStatus:
    fields.setdefault("started_at", NOW - 100 + int(id.lstrip("r") or 0))
    if state is READY:
        fields.setdefault("healthy_at", NOW)
    return ReplicaStatus(id=id, api=api, version=version, state=state, **fields)


def want(
    replicas: int, version: str = "v1", surge: int | str = "25%", unavailable: int | str = "25%", **timeouts: float
) -> Desired:
    strategy = UpdateStrategy(max_surge=surge, max_unavailable=unavailable)
    return Desired((DesiredAPI("iris", version, replicas, strategy, **timeouts),))


def observe(*replicas: ReplicaStatus, now: float = NOW) -> Observed:
    return Observed(now=now, replicas=replicas)


class TestScaling:
    def test_first_deploy_starts_every_replica(self) -> None:
        actions = plan(want(3), observe())
        assert actions == [Start("iris", "v1")] * 3
        assert actions[0].reason == "scale up to 3"

    def test_nothing_to_do_when_observed_matches(self) -> None:
        assert plan(want(2), observe(replica("r1"), replica("r2"))) == []

    def test_replicas_still_starting_are_not_started_twice(self) -> None:
        assert plan(want(2), observe(replica("r1", STARTING), replica("r2", STARTING))) == []

    def test_scale_up_starts_the_missing_ones(self) -> None:
        assert plan(want(4), observe(replica("r1"), replica("r2"))) == [Start("iris", "v1")] * 2

    def test_scale_down_drains_the_youngest(self) -> None:
        observed = observe(*(replica(f"r{n}") for n in range(1, 5)))
        assert plan(want(2), observed) == [Drain("r3"), Drain("r4")]

    def test_scale_down_removes_replicas_that_are_not_ready_first(self) -> None:
        observed = observe(
            replica("r1"),
            replica("r2", STARTING),
            replica("r3", ReplicaState.crash_looping, restarts=2, restart_at=NOW + 5),
            replica("r4"),
        )
        assert plan(want(2), observed) == [Drain("r2"), Forget("r3")]

    def test_scale_to_zero_drains_all(self) -> None:
        assert plan(want(0), observe(replica("r1"), replica("r2"))) == [Drain("r1"), Drain("r2")]

    def test_apis_are_planned_independently_in_name_order(self) -> None:
        desired = Desired((DesiredAPI("zebra", "z1", 1), DesiredAPI("ant", "a1", 2)))
        observed = observe(replica("r1", api="zebra", version="z1"), replica("r2", api="ant", version="a1"))
        assert plan(desired, observed) == [Start("ant", "a1")]


class TestStopping:
    def test_delete_drains_what_runs_and_forgets_what_does_not(self) -> None:
        observed = observe(
            replica("r1"),
            replica("r2", STARTING),
            replica("r3", ReplicaState.crash_looping, restart_at=NOW + 9),
            replica("r4", ReplicaState.draining, draining_since=NOW - 1),
        )
        actions = plan(Desired(), observed)
        assert actions == [Drain("r1"), Drain("r2"), Forget("r3")]
        assert {action.reason for action in actions} == {"API deleted"}

    def test_stopped_replicas_are_forgotten(self) -> None:
        assert plan(want(1), observe(replica("r1"), replica("r2", ReplicaState.stopped))) == [Forget("r2")]

    def test_a_replica_draining_within_its_timeout_and_grace_period_is_left_alone(self) -> None:
        # it may wait `timeout` for the gateway's requests to it, then take `grace_period` to stop
        draining = replica("r2", ReplicaState.draining, request_timeout=10, grace_period=30, draining_since=NOW - 44)
        assert plan(want(1), observe(replica("r1"), draining)) == []

    def test_a_replica_draining_past_its_timeout_and_grace_period_is_killed(self) -> None:
        draining = replica("r2", ReplicaState.draining, request_timeout=10, grace_period=30, draining_since=NOW - 46)
        [kill] = plan(want(1), observe(replica("r1"), draining))
        assert kill == Kill("r2") and kill.reason == "still draining 45s after it was told to stop"

    def test_draining_replicas_do_not_count_towards_the_desired(self) -> None:
        draining = replica("r1", ReplicaState.draining, draining_since=NOW)
        assert plan(want(1), observe(draining)) == [Start("iris", "v1")]


class TestCrashes:
    def test_a_crash_starts_a_backoff(self) -> None:
        crashed = replica("r1", ReplicaState.crashed, last_error="exit 1: ImportError", exited_at=NOW - 0.5)
        actions = plan(want(1), observe(crashed))
        assert actions == [Backoff("r1", attempt=1, restart_at=NOW + 0.5)]
        assert "ImportError" in actions[0].reason

    @pytest.mark.parametrize(("restarts", "delay"), [(1, 2), (2, 4), (3, 8), (6, 60), (30, 60)])
    def test_the_backoff_doubles_up_to_its_maximum(self, restarts: int, delay: float) -> None:
        crashed = replica("r1", ReplicaState.crashed, restarts=restarts, started_at=NOW - 2, exited_at=NOW)
        assert plan(want(1), observe(crashed)) == [Backoff("r1", restarts + 1, NOW + delay)]

    def test_a_replica_that_ran_long_starts_its_backoff_over(self) -> None:
        crashed = replica("r1", ReplicaState.crashed, restarts=5, started_at=NOW - 301, exited_at=NOW)
        assert plan(want(1), observe(crashed)) == [Backoff("r1", 1, NOW + 1)]

    def test_a_crash_looping_replica_waits_for_its_time(self) -> None:
        looping = replica("r1", ReplicaState.crash_looping, restarts=3, restart_at=NOW + 1)
        assert plan(want(1), observe(looping)) == []
        assert plan(want(1), observe(looping, now=NOW + 1)) == [Restart("r1")]

    def test_a_crash_looping_replica_is_not_doubled_by_a_new_one(self) -> None:
        looping = replica("r2", ReplicaState.crash_looping, restarts=3, restart_at=NOW + 10)
        assert plan(want(2), observe(replica("r1"), looping)) == []

    def test_a_crash_beyond_the_desired_count_is_forgotten(self) -> None:
        crashed = replica("r2", ReplicaState.crashed, exited_at=NOW)
        assert plan(want(1), observe(replica("r1"), crashed)) == [Forget("r2")]


class TestHealth:
    def test_a_ready_replica_that_stops_answering_is_failed_and_restarted(self) -> None:
        hung = replica("r1", healthy_at=NOW - 31)
        actions = plan(want(1), observe(hung))
        assert actions == [Fail("r1", "stopped answering health checks for 31s"), Backoff("r1", 1, NOW + 1)]

    def test_a_ready_replica_within_the_health_timeout_is_fine(self) -> None:
        assert plan(want(1), observe(replica("r1", healthy_at=NOW - 29))) == []

    def test_a_replica_never_ready_is_failed_after_its_apis_startup_timeout(self) -> None:
        stuck = replica("r1", STARTING, started_at=NOW - 11)
        actions = plan(want(1, startup_timeout=10), observe(stuck))
        assert actions == [Fail("r1", "not ready 10s after it started (startup_timeout)"), Backoff("r1", 1, NOW + 1)]

    def test_a_replica_still_loading_within_the_startup_timeout_is_fine(self) -> None:
        assert plan(want(1, startup_timeout=10), observe(replica("r1", STARTING, started_at=NOW - 9))) == []
        assert plan(want(1), observe(replica("r1", STARTING, started_at=NOW - 299))) == []  # 300s by default

    def test_the_health_timeout_is_the_apis(self) -> None:
        hung = replica("r1", healthy_at=NOW - 6)
        assert plan(want(1, health_timeout=5), observe(hung))[0] == Fail("r1", "stopped answering health checks for 6s")

    def test_how_long_it_went_unanswered_is_said_in_whole_seconds(self) -> None:
        hung = replica("r1", healthy_at=NOW - 5.07928)
        [fail, _] = plan(want(1, health_timeout=5), observe(hung))
        assert fail == Fail("r1", "stopped answering health checks for 5s")

    def test_a_hung_replica_of_an_old_version_is_dropped_not_restarted(self) -> None:
        observed = observe(replica("r1", version="v1", healthy_at=NOW - 60), replica("r2", version="v2"))
        actions = plan(want(1, "v2"), observed)
        assert actions == [Fail("r1", "stopped answering health checks for 60s"), Forget("r1")]


class TestRollingUpdate:
    def test_a_new_version_starts_within_the_surge_and_drains_within_the_unavailable_budget(self) -> None:
        observed = observe(*(replica(f"r{n}") for n in range(1, 5)))
        actions = plan(want(4, "v2"), observed)  # 25% of 4: one more may run, one fewer may be ready
        assert actions == [Drain("r1"), Start("iris", "v2"), Start("iris", "v2")]
        assert actions[-1].reason == "roll out version v2"

    def test_surge_and_unavailable_are_both_spent(self) -> None:
        # the audit's case: 4 replicas, surge 2 and unavailable 2 drained nothing
        observed = observe(*(replica(f"r{n}") for n in range(1, 5)))
        actions = plan(want(4, "v2", surge=2, unavailable=2), observed)
        assert actions == [Drain("r1"), Drain("r2"), *[Start("iris", "v2")] * 4]

    def test_without_unavailable_old_replicas_stay_while_the_new_one_starts(self) -> None:
        observed = observe(*(replica(f"r{n}") for n in range(1, 5)), replica("r5", STARTING, version="v2"))
        assert plan(want(4, "v2", surge=1, unavailable=0), observed) == []

    def test_a_ready_new_replica_replaces_the_oldest_old_one(self) -> None:
        observed = observe(*(replica(f"r{n}") for n in range(1, 5)), replica("r5", version="v2"))
        assert plan(want(4, "v2", surge=1, unavailable=0), observed) == [Drain("r1"), Start("iris", "v2")]

    def test_a_whole_surge_starts_at_once(self) -> None:
        observed = observe(*(replica(f"r{n}") for n in range(1, 5)))
        assert plan(want(4, "v2", surge="50%", unavailable=0), observed) == [Start("iris", "v2")] * 2

    def test_without_surge_the_unavailable_budget_makes_room(self) -> None:
        observed = observe(*(replica(f"r{n}") for n in range(1, 5)))
        assert plan(want(4, "v2", surge=0, unavailable=1), observed) == [Drain("r1"), Start("iris", "v2")]

    def test_budgets_that_both_round_to_zero_still_allow_progress(self) -> None:
        # 25% of one replica rounds down to 0; like Kubernetes, one may then be unavailable
        observed = observe(replica("r1"))
        assert plan(want(1, "v2", surge=0, unavailable="25%"), observed) == [Drain("r1"), Start("iris", "v2")]

    def test_one_replica_is_never_unavailable_by_default(self) -> None:
        # 25% of 1: a surge of 1 (rounded up), no unavailable (rounded down): the old one serves until the new is ready
        assert plan(want(1, "v2"), observe(replica("r1"))) == [Start("iris", "v2")]
        assert plan(want(1, "v2"), observe(replica("r1"), replica("r2", version="v2"))) == [Drain("r1")]

    def test_old_replicas_that_are_not_ready_go_at_once(self) -> None:
        observed = observe(
            replica("r1"),
            replica("r2", STARTING),
            replica("r3", ReplicaState.crash_looping, restart_at=NOW + 4),
        )
        # they free their places: 1 old ready + 3 new fits in 3 desired + a surge of 1
        expected = [Drain("r2"), Forget("r3"), *[Start("iris", "v2")] * 3]
        assert plan(want(3, "v2"), observed) == expected

    def test_a_rollout_with_fewer_replicas_drains_the_excess_at_once(self) -> None:
        observed = observe(*(replica(f"r{n}") for n in range(1, 5)))
        assert plan(want(2, "v2"), observed) == [Drain("r1"), Drain("r2"), Start("iris", "v2")]

    def test_a_new_version_that_crashes_keeps_the_old_replicas_the_budget_requires(self) -> None:
        observed = observe(
            *(replica(f"r{n}") for n in range(1, 4)),
            replica("r4", ReplicaState.draining, draining_since=NOW - 1),
            replica("r5", ReplicaState.crash_looping, version="v2", restarts=4, restart_at=NOW + 8),
            replica("r6", ReplicaState.crash_looping, version="v2", restarts=4, restart_at=NOW + 8),
        )
        assert plan(want(4, "v2"), observed) == []  # 3 ready = 4 - 1 unavailable; 5 running = 4 + 1 surge

    def test_a_fixed_version_replaces_the_broken_one(self) -> None:
        observed = observe(
            *(replica(f"r{n}") for n in range(1, 5)),
            replica("r5", ReplicaState.crash_looping, version="v2", restarts=4, restart_at=NOW + 8),
        )
        assert plan(want(4, "v3", unavailable=0), observed) == [Forget("r5"), Start("iris", "v3")]


class Processes:
    """Stands in for the supervisor: carries out actions and lets one tick pass.

    Replicas of a version in `broken` crash as soon as they start; the others are ready one tick after
    launch, and a drain ends one tick after it starts.
    """

    def __init__(self, *replicas: ReplicaStatus, broken: frozenset[str] = frozenset()) -> None:
        self.replicas = {r.id: r for r in replicas}
        self.broken = broken
        self.launched = 0
        self.restarts: list[float] = []

    def apply(self, actions: list[Action], now: float) -> None:
        for action in actions:
            if isinstance(action, Start):
                self.launched += 1
                new = ReplicaStatus(f"n{self.launched}", action.api, action.version, STARTING, started_at=now)
                self.replicas[new.id] = new
            elif isinstance(action, Forget):
                del self.replicas[action.replica]
            else:
                self.replicas[action.replica] = self._after(self.replicas[action.replica], action, now)

    def _after(self, replica: ReplicaStatus, action: Action, now: float) -> ReplicaStatus:
        if isinstance(action, Drain):
            return replace(replica, state=ReplicaState.draining, draining_since=now)
        if isinstance(action, Backoff):
            return replace(
                replica,
                state=ReplicaState.crash_looping,
                restarts=action.attempt,
                restart_at=action.restart_at,
            )
        if isinstance(action, Restart):
            self.restarts.append(now)
            return replace(replica, state=STARTING, started_at=now)
        raise AssertionError(f"unexpected {action}")

    def tick(self, now: float) -> Observed:
        for replica in list(self.replicas.values()):
            self.replicas[replica.id] = self._progress(replica, now)
        return Observed(now, tuple(self.replicas.values()))

    def _progress(self, replica: ReplicaStatus, now: float) -> ReplicaStatus:
        if replica.state is STARTING and replica.version in self.broken:
            return replace(replica, state=ReplicaState.crashed, last_error="ValueError: bad model", exited_at=now)
        if replica.state in (STARTING, READY):
            return replace(replica, state=READY, healthy_at=now)
        if replica.state is ReplicaState.draining:
            return replace(replica, state=ReplicaState.stopped)
        return replica

    def count(self, version: str, *states: ReplicaState) -> int:
        return sum(r.version == version and r.state in states for r in self.replicas.values())


def roll(processes: Processes, desired: Desired, ticks: int) -> list[Observed]:
    history, now = [], NOW
    for _ in range(ticks):
        observed = processes.tick(now)
        history.append(observed)
        processes.apply(plan(desired, observed), now)
        now += 1
    return history


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable"),
    [(4, "25%", "25%"), (4, "50%", 0), (3, 0, 1), (5, 2, "40%"), (1, 1, 0), (1, 0, 1), (10, "30%", "10%"), (4, 2, 2)],
)
def test_a_rollout_converges_within_its_budgets(replicas: int, surge: int | str, unavailable: int | str) -> None:
    processes = Processes(*(replica(f"r{n}") for n in range(1, replicas + 1)))
    desired = want(replicas, "v2", surge=surge, unavailable=unavailable)
    history = roll(processes, desired, ticks=8 * replicas + 5)
    strategy = desired.apis[0].strategy
    extra = resolve_count_or_percent(strategy.max_surge, replicas, round_up=True)
    missing = resolve_count_or_percent(strategy.max_unavailable, replicas, round_up=False)
    # Kubernetes: both budgets at once; when both round to 0, one replica may be unavailable
    most, least = replicas + extra, replicas - (missing if extra or missing else 1)
    for observed in history:
        live = [r for r in observed.replicas if r.state in LIVE_STATES]
        assert len(live) <= most
        assert sum(r.state is READY for r in observed.replicas) >= least
    assert processes.count("v2", READY) == replicas
    assert len(processes.replicas) == replicas


def test_a_broken_rollout_keeps_the_old_replicas_its_budget_requires_then_a_fix_completes_it() -> None:
    processes = Processes(*(replica(f"r{n}") for n in range(1, 5)), broken=frozenset({"v2"}))
    broken = roll(processes, want(4, "v2", surge=1, unavailable=0), ticks=40)
    assert all(sum(r.version == "v1" and r.state is READY for r in o.replicas) == 4 for o in broken)
    assert processes.count("v2", ReplicaState.crash_looping, ReplicaState.crashed, STARTING) == 1
    with_unavailable = Processes(*(replica(f"r{n}") for n in range(1, 5)), broken=frozenset({"v2"}))
    history = roll(with_unavailable, want(4, "v2"), ticks=40)
    assert min(sum(r.version == "v1" and r.state is READY for r in o.replicas) for o in history[1:]) == 3
    assert max(r.restarts for r in processes.replicas.values()) >= 3
    roll(processes, want(4, "v3"), ticks=30)
    assert processes.count("v3", READY) == 4
    assert len(processes.replicas) == 4


def test_a_crash_loop_restarts_later_each_time() -> None:
    processes = Processes(broken=frozenset({"v1"}))
    roll(processes, want(1), ticks=40)
    gaps = [later - earlier for earlier, later in zip(processes.restarts, processes.restarts[1:], strict=False)]
    assert len(gaps) >= 3
    assert gaps == sorted(gaps)
    assert gaps[-1] >= 4 * gaps[0]
    assert processes.launched == 1  # the same replica comes back; no new ones pile up
