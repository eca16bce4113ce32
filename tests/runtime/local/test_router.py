from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from shipyard.runtime.local.router import Route, Splitter, least_in_flight
from shipyard.spec.models import TrafficSplitter

DRAWS = 20_000


class Scripted:
    """A random source that returns the given values in turn: the outside world, made exact."""

    def __init__(self, values: Iterable[float]) -> None:
        self._values = iter(values)

    def random(self) -> float:
        return next(self._values)


def splitter(*apis: dict[str, Any]) -> Splitter:
    return Splitter.of(TrafficSplitter(kind="TrafficSplitter", name="split", apis=list(apis)))


def chi_square(observed: Mapping[Any, int], expected: dict[str, float], draws: int) -> float:
    return sum((observed[name] - share * draws) ** 2 / (share * draws) for name, share in expected.items())


class TestWeightedChoice:
    def test_each_api_gets_its_share(self) -> None:
        split = splitter({"name": "a", "weight": 50}, {"name": "b", "weight": 30}, {"name": "c", "weight": 20})
        rng = random.Random(7)
        counts = Counter(split.route(rng).primary for _ in range(DRAWS))
        # 13.8 is the 99.9th percentile of chi-square with 2 degrees of freedom
        assert chi_square(counts, {"a": 0.5, "b": 0.3, "c": 0.2}, DRAWS) < 13.8

    def test_a_skewed_split_is_not_flattened(self) -> None:
        split = splitter({"name": "stable", "weight": 99}, {"name": "canary", "weight": 1})
        rng = random.Random(3)
        counts = Counter(split.route(rng).primary for _ in range(DRAWS))
        assert 150 < counts["canary"] < 250  # 200 expected; sd 14

    def test_boundaries_of_the_weights(self) -> None:
        split = splitter({"name": "a", "weight": 70}, {"name": "b", "weight": 30})
        assert split.route(Scripted([0.0])).primary == "a"
        assert split.route(Scripted([0.6999])).primary == "a"
        assert split.route(Scripted([0.7])).primary == "b"
        assert split.route(Scripted([0.999999])).primary == "b"

    def test_zero_weight_is_never_chosen(self) -> None:
        split = splitter({"name": "a", "weight": 0}, {"name": "b", "weight": 100}, {"name": "c", "weight": 0})
        assert {split.route(Scripted([value])).primary for value in (0.0, 0.5, 0.999999)} == {"b"}

    def test_one_api_takes_everything(self) -> None:
        assert splitter({"name": "only", "weight": 100}).route(Scripted([0.42])) == Route("only")


class TestShadows:
    def test_a_shadow_gets_copies_at_its_weight(self) -> None:
        split = splitter({"name": "live", "weight": 100}, {"name": "candidate", "weight": 10, "shadow": True})
        rng = random.Random(11)
        routes = [split.route(rng) for _ in range(DRAWS)]
        copies = sum(route.shadows == ("candidate",) for route in routes)
        assert 1800 < copies < 2200  # 2000 expected; sd 42
        assert {route.primary for route in routes} == {"live"}

    def test_a_shadow_is_never_a_primary(self) -> None:
        split = splitter({"name": "live", "weight": 100}, {"name": "candidate", "weight": 100, "shadow": True})
        route = split.route(Scripted([0.99, 0.5]))
        assert route == Route("live", ("candidate",))

    def test_each_shadow_is_drawn_on_its_own(self) -> None:
        split = splitter(
            {"name": "live", "weight": 100},
            {"name": "s1", "weight": 50, "shadow": True},
            {"name": "s2", "weight": 50, "shadow": True},
        )
        assert split.route(Scripted([0.1, 0.2, 0.7])).shadows == ("s1",)
        assert split.route(Scripted([0.1, 0.7, 0.2])).shadows == ("s2",)
        rng = random.Random(5)
        both = sum(len(split.route(rng).shadows) == 2 for _ in range(DRAWS))
        assert 4700 < both < 5300  # independent: 25% expected; sd 61

    def test_a_zero_weight_shadow_gets_nothing(self) -> None:
        split = splitter({"name": "live", "weight": 100}, {"name": "off", "weight": 0, "shadow": True})
        assert split.route(Scripted([0.5, 0.0])).shadows == ()


class TestLeastInFlight:
    def test_picks_the_replica_with_fewest_in_flight(self) -> None:
        assert least_in_flight({"r1": 3, "r2": 1, "r3": 2}, random.Random(0)) == "r2"

    def test_full_replicas_are_skipped(self) -> None:
        assert least_in_flight({"r1": 8, "r2": 7}, random.Random(0), limit=8) == "r2"
        assert least_in_flight({"r1": 8, "r2": 8}, random.Random(0), limit=8) is None

    def test_no_ready_replica_means_none(self) -> None:
        assert least_in_flight({}, random.Random(0)) is None

    def test_ties_are_spread_evenly(self) -> None:
        rng = random.Random(1)
        counts = Counter(least_in_flight({"r1": 2, "r2": 2, "r3": 2, "r4": 5}, rng) for _ in range(DRAWS))
        assert "r4" not in counts
        # 13.8 is the 99.9th percentile of chi-square with 2 degrees of freedom
        assert chi_square(counts, {"r1": 1 / 3, "r2": 1 / 3, "r3": 1 / 3}, DRAWS) < 13.8

    @pytest.mark.parametrize("value", [0.0, 0.5, 0.999999])
    def test_tie_break_does_not_depend_on_mapping_order(self, value: float) -> None:
        forward = least_in_flight({"a": 0, "b": 0}, Scripted([value]))
        backward = least_in_flight({"b": 0, "a": 0}, Scripted([value]))
        assert forward == backward
