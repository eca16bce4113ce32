"""Where a request goes: a splitter's weighted choice with shadow copies, then the least busy replica.

Pure: the random source is passed in (`random.Random` fits), so tests seed it and the gateway owns one.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import accumulate
from typing import Protocol

from shipyard.spec.models import TrafficSplitter


class RandomSource(Protocol):
    def random(self) -> float:
        """A float in [0, 1)."""
        ...


@dataclass(frozen=True)
class Route:
    primary: str
    """The API whose answer the client gets."""
    shadows: tuple[str, ...] = ()
    """APIs that get a copy of the request; their answers are compared, then discarded."""


@dataclass(frozen=True)
class Splitter:
    """A TrafficSplitter prepared for choosing: cumulative weights of the primaries, shadow probabilities."""

    name: str
    primaries: tuple[str, ...]
    bounds: tuple[float, ...]
    shadows: tuple[tuple[str, float], ...]

    @classmethod
    def of(cls, spec: TrafficSplitter) -> Splitter:
        weighted = [api for api in spec.apis if not api.shadow and api.weight > 0]
        return cls(
            name=spec.name,
            primaries=tuple(api.name for api in weighted),
            bounds=tuple(accumulate(api.weight for api in weighted)),
            shadows=tuple((api.name, api.weight / 100) for api in spec.apis if api.shadow),
        )

    @property
    def targets(self) -> tuple[str, ...]:
        """Every API it sends to, shadows included."""
        return self.primaries + tuple(name for name, _ in self.shadows)

    def route(self, rng: RandomSource) -> Route:
        """One primary by weight; each shadow independently with probability weight/100."""
        point = rng.random() * self.bounds[-1]
        primary = self.primaries[min(bisect_right(self.bounds, point), len(self.primaries) - 1)]
        copies = tuple(name for name, chance in self.shadows if rng.random() < chance)
        return Route(primary, copies)


def least_in_flight(in_flight: Mapping[str, int], rng: RandomSource, limit: int | None = None) -> str | None:
    """The replica with the fewest requests in flight, ties broken at random.

    `in_flight` maps each ready replica to its requests in flight; replicas at `limit` are full.
    None when there is no replica with room, so the caller queues the request or refuses it.
    """
    open_counts = {replica: count for replica, count in in_flight.items() if limit is None or count < limit}
    if not open_counts:
        return None
    fewest = min(open_counts.values())
    tied = sorted(replica for replica, count in open_counts.items() if count == fewest)
    return tied[int(rng.random() * len(tied))]
