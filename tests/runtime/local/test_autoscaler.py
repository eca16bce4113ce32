from __future__ import annotations

from typing import Any

import pytest

from shipyard.runtime.local.autoscaler import (
    Decision,
    History,
    Policy,
    Recommendation,
    Sample,
    average_in_flight,
    decide,
)
from shipyard.spec.models import Autoscaling, Concurrency, RealtimeAPI

LONG_AGO = -10_000.0
NOW = 1_000.0


def policy(target: float = 4.0, **autoscaling: Any) -> Policy:
    settings: dict[str, Any] = {
        "min_replicas": 1,
        "max_replicas": 100,
        "window": 60,
        "upscale_stabilization": 0,
        "downscale_stabilization": 0,
        "max_upscale_factor": 10,
    }
    settings.update(autoscaling)
    return Policy(Autoscaling(**settings), target)


def steady(in_flight: float, since: float = NOW - 120) -> list[Sample]:
    return [Sample(since, in_flight)]


def run(p: Policy, current: int, samples: list[Sample], history: History | None = None) -> Decision:
    return decide(p, current, samples, history or History(started_at=LONG_AGO), NOW)


class TestAverageInFlight:
    def test_weights_each_value_by_how_long_it_held(self) -> None:
        samples = [Sample(0, 10), Sample(30, 2)]
        assert average_in_flight(samples, 0, 40) == pytest.approx((10 * 30 + 2 * 10) / 40)

    def test_a_sample_before_the_window_holds_into_it(self) -> None:
        average = average_in_flight([Sample(-500, 7), Sample(50, 1)], 0, 60)
        assert average == pytest.approx((7 * 50 + 1 * 10) / 60)

    def test_order_of_samples_does_not_matter(self) -> None:
        samples = [Sample(30, 2), Sample(0, 10)]
        assert average_in_flight(samples, 0, 40) == average_in_flight(samples[::-1], 0, 40)

    def test_samples_after_the_window_are_ignored(self) -> None:
        assert average_in_flight([Sample(0, 3), Sample(100, 50)], 0, 60) == pytest.approx(3)

    def test_a_single_sample_at_the_end_counts(self) -> None:
        assert average_in_flight([Sample(60, 5)], 0, 60) == pytest.approx(5)

    def test_no_samples_means_no_average(self) -> None:
        assert average_in_flight([], 0, 60) is None
        assert average_in_flight([Sample(100, 1)], 0, 60) is None


class TestRecommendation:
    def test_load_at_target_keeps_the_count(self) -> None:
        decision = run(policy(), 3, steady(12))
        assert decision.replicas == 3
        assert decision.reason.startswith("stay at 3")

    def test_replicas_are_in_flight_over_target_rounded_up(self) -> None:
        decision = run(policy(), 2, steady(9.6))
        assert decision.replicas == 3
        assert decision.average_in_flight == pytest.approx(9.6)
        assert decision.reason.startswith("scale 2 → 3")
        assert "9.60" in decision.reason

    def test_the_window_averages_a_burst(self) -> None:
        # 40 in flight for 6s of a 60s window, idle otherwise: average 4 -> one replica
        samples = [Sample(NOW - 120, 0), Sample(NOW - 6, 40)]
        assert run(policy(), 1, samples).replicas == 1
        assert run(policy(window=6), 1, samples).replicas == 10

    def test_upscale_tolerance_ignores_a_small_rise(self) -> None:
        decision = run(policy(target=1), 4, steady(4.1))
        assert decision.replicas == 4
        assert "upscale_tolerance" in decision.reason
        assert run(policy(target=1), 4, steady(4.3)).replicas == 5

    def test_downscale_tolerance_ignores_a_small_fall(self) -> None:
        decision = run(policy(target=1), 40, steady(38.5))
        assert decision.replicas == 40
        assert "downscale_tolerance" in decision.reason
        assert run(policy(target=1), 40, steady(37.5)).replicas == 38

    def test_upscale_factor_limits_the_step(self) -> None:
        decision = run(policy(target=1, max_upscale_factor=3), 2, steady(100))
        assert decision.replicas == 6
        assert "max_upscale_factor" in decision.reason

    def test_downscale_factor_limits_the_step(self) -> None:
        decision = run(policy(target=1, max_downscale_factor=0.75), 8, steady(0.5))
        assert decision.replicas == 6
        assert "max_downscale_factor" in decision.reason

    def test_factors_always_allow_one_step(self) -> None:
        assert run(policy(target=1, max_upscale_factor=1.01), 1, steady(50)).replicas == 2
        assert run(policy(target=1, max_downscale_factor=0.99), 2, steady(0.1)).replicas == 1

    def test_bounds_clamp_the_result(self) -> None:
        assert run(policy(target=1, max_replicas=4), 3, steady(50)).replicas == 4
        decision = run(policy(target=1, min_replicas=2), 2, steady(0))
        assert decision.replicas == 2
        assert "min_replicas" in decision.reason

    def test_scales_to_zero_only_when_allowed(self) -> None:
        assert run(policy(min_replicas=0), 1, steady(0)).replicas == 0
        assert run(policy(min_replicas=1), 1, steady(0)).replicas == 1

    def test_no_samples_keeps_the_count_and_the_history(self) -> None:
        history = History(LONG_AGO, (Recommendation(NOW - 5, 3),))
        decision = run(policy(), 3, [], history)
        assert (decision.replicas, decision.history, decision.average_in_flight) == (3, history, None)
        assert "no in-flight samples" in decision.reason


class TestStabilization:
    def test_no_scale_down_below_the_highest_recent_recommendation(self) -> None:
        p = policy(target=1, downscale_stabilization=300, max_downscale_factor=0.5)
        history = History(LONG_AGO, (Recommendation(NOW - 200, 5), Recommendation(NOW - 100, 3)))
        decision = run(p, 6, steady(1), history)
        assert decision.replicas == 5
        assert "held at 5 by downscale_stabilization" in decision.reason

    def test_scales_down_once_the_high_recommendation_ages_out(self) -> None:
        p = policy(target=1, downscale_stabilization=300, max_downscale_factor=0.5)
        history = History(LONG_AGO, (Recommendation(NOW - 400, 6), Recommendation(NOW - 100, 3)))
        assert run(p, 6, steady(1), history).replicas == 3

    def test_downscale_stabilization_never_scales_up(self) -> None:
        p = policy(target=1, downscale_stabilization=300)
        history = History(LONG_AGO, (Recommendation(NOW - 100, 9),))
        assert run(p, 4, steady(2), history).replicas == 4

    def test_no_scale_up_above_the_lowest_recent_recommendation(self) -> None:
        p = policy(target=1, upscale_stabilization=60)
        history = History(LONG_AGO, (Recommendation(NOW - 30, 3), Recommendation(NOW - 10, 8)))
        decision = run(p, 2, steady(10), history)
        assert decision.replicas == 3
        assert "held at 3 by upscale_stabilization" in decision.reason

    def test_upscale_stabilization_never_scales_down(self) -> None:
        p = policy(target=1, upscale_stabilization=60)
        history = History(LONG_AGO, (Recommendation(NOW - 30, 1),))
        assert run(p, 4, steady(10), history).replicas == 4

    def test_a_fresh_autoscaler_holds_until_it_has_watched_a_full_period(self) -> None:
        p = policy(target=1, upscale_stabilization=60, downscale_stabilization=300)
        up = decide(p, 2, steady(10), History(started_at=NOW - 30), NOW)
        down = decide(p, 5, steady(1), History(started_at=NOW - 200), NOW)
        assert (up.replicas, down.replicas) == (2, 5)
        assert "watched for less than upscale_stabilization" in up.reason
        assert decide(p, 2, steady(10), History(started_at=NOW - 61), NOW).replicas == 10

    def test_from_zero_replicas_waiting_requests_are_never_held(self) -> None:
        p = policy(target=4, min_replicas=0, upscale_stabilization=60)
        assert decide(p, 0, steady(3), History(started_at=NOW), NOW).replicas == 1

    def test_history_records_the_recommendation_and_forgets_old_ones(self) -> None:
        p = policy(target=1, upscale_stabilization=60, downscale_stabilization=300)
        history = History(LONG_AGO, (Recommendation(NOW - 301, 9), Recommendation(NOW - 299, 4)))
        decision = run(p, 4, steady(4), history)
        assert decision.history == History(LONG_AGO, (Recommendation(NOW - 299, 4), Recommendation(NOW, 4)))

    def test_new_bounds_win_over_an_old_history(self) -> None:
        p = policy(target=1, max_replicas=3, downscale_stabilization=300)
        history = History(LONG_AGO, (Recommendation(NOW - 100, 8),))
        assert run(p, 8, steady(8), history).replicas == 3


def test_target_defaults_to_max_concurrency() -> None:
    api = RealtimeAPI(name="iris", handler="handler.py:Handler", concurrency=Concurrency(max_concurrency=6))
    assert Policy.of(api).target_in_flight == 6
    tuned = api.model_copy(update={"autoscaling": Autoscaling(target_in_flight=2.5)})
    assert Policy.of(tuned).target_in_flight == 2.5


def test_a_load_spike_scales_up_and_back_down_after_the_window() -> None:
    """A minute of 40 in-flight requests, then silence, deciding every 10 seconds.

    As in Cortex, the recorded recommendations are already step-limited, so each step down waits for
    a whole downscale_stabilization period.
    """
    p = policy(
        target=4,
        max_replicas=8,
        window=10,
        upscale_stabilization=20,
        downscale_stabilization=60,
        max_downscale_factor=0.5,
    )
    samples = [Sample(0, 0), Sample(30, 40), Sample(90, 0)]
    history, current, trajectory = History(started_at=0), 1, []
    for now in range(10, 250, 10):
        decision = decide(p, current, [s for s in samples if s.at <= now], history, float(now))
        history, current = decision.history, decision.replicas
        trajectory.append(current)
    at = {now: trajectory[now // 10 - 1] for now in range(10, 250, 10)}
    # load from t=30, held by the 20s upscale window, then straight to max_replicas
    assert [at[t] for t in (30, 40, 50, 60)] == [1, 1, 1, 8]
    # load ends at t=90: 8 for the 60s downscale window, then halves once per window
    assert {at[t] for t in range(60, 160, 10)} == {8}
    assert {at[t] for t in range(160, 230, 10)} == {4}
    assert at[230] == 2


class TestPartialWindow:
    def test_no_scaling_down_on_a_window_only_partly_observed(self) -> None:
        # a daemon restarted 2 s ago: its samples cover 2 s of a 30 s window
        decision = run(policy(target=1, window=30), 3, [Sample(NOW - 2, 0)])
        assert decision.replicas == 3
        assert "over 2.0s of the 30s window" in decision.reason
        assert "held at 3: only 2.0s of the 30s window observed" in decision.reason

    def test_scaling_down_once_the_whole_window_is_observed(self) -> None:
        decision = run(policy(target=1, window=30), 3, [Sample(NOW - 30, 0)])
        assert decision.replicas == 2 and "over 30s /" in decision.reason

    def test_scaling_up_does_not_wait_for_a_whole_window(self) -> None:
        assert run(policy(target=1, window=30), 1, [Sample(NOW - 2, 5)]).replicas == 5


def test_the_step_limits_default_to_cortexs() -> None:
    defaults = Autoscaling()
    assert (defaults.max_upscale_factor, defaults.max_downscale_factor) == (1.5, 0.75)
    assert (defaults.upscale_tolerance, defaults.downscale_tolerance) == (0.05, 0.05)
    assert (defaults.window, defaults.upscale_stabilization, defaults.downscale_stabilization) == (60, 60, 300)
