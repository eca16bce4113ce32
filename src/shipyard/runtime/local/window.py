"""Request statistics over a sliding window: rate, status classes and latency percentiles. Pure.

One slot per second, each with counts per status class and a latency histogram on log-spaced buckets
(about 5% apart, so a percentile read from it is within 5%). Recording costs a bisect and three
increments; reading merges the slots of the last `span` seconds.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass, field

_BUCKET_GROWTH = 1.05
_SMALLEST = 0.00005
BOUNDS: tuple[float, ...] = tuple(_SMALLEST * _BUCKET_GROWTH**i for i in range(int(math.log(1200 / _SMALLEST, 1.05))))
"""Upper bounds of the latency buckets in seconds, from 50 µs to about 20 minutes."""


@dataclass
class _Slot:
    second: int
    classes: list[int] = field(default_factory=lambda: [0, 0, 0, 0, 0, 0])
    """Responses by status class: index 2 holds 2xx, 4 holds 4xx, 5 holds 5xx."""
    latency: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Summary:
    requests: int
    per_second: float
    p50_ms: float | None
    p99_ms: float | None
    ok: int
    """2xx responses."""
    client_errors: int
    """4xx responses."""
    server_errors: int
    """5xx responses, the gateway's own 503s included."""


class Window:
    def __init__(self, span: int = 60) -> None:
        self.span = span
        self._slots: list[_Slot] = [_Slot(-1) for _ in range(span)]

    def record(self, now: float, status: int, seconds: float) -> None:
        second = int(now)
        slot = self._slots[second % self.span]
        if slot.second != second:
            slot = self._slots[second % self.span] = _Slot(second)
        slot.classes[min(max(status // 100, 0), 5)] += 1
        bucket = bisect_left(BOUNDS, seconds)
        slot.latency[bucket] = slot.latency.get(bucket, 0) + 1

    def summary(self, now: float) -> Summary:
        newest = int(now)
        slots = [slot for slot in self._slots if newest - self.span < slot.second <= newest]
        classes = [sum(slot.classes[i] for slot in slots) for i in range(6)]
        merged: dict[int, int] = {}
        for slot in slots:
            for bucket, count in slot.latency.items():
                merged[bucket] = merged.get(bucket, 0) + count
        total = sum(classes)
        return Summary(
            requests=total,
            per_second=total / self.span,
            p50_ms=_percentile(merged, total, 0.5),
            p99_ms=_percentile(merged, total, 0.99),
            ok=classes[2],
            client_errors=classes[4],
            server_errors=classes[5],
        )


def _percentile(buckets: dict[int, int], total: int, quantile: float) -> float | None:
    if total == 0:
        return None
    rank = max(1, math.ceil(total * quantile))
    seen = 0
    for bucket in sorted(buckets):
        seen += buckets[bucket]
        if seen >= rank:
            return BOUNDS[min(bucket, len(BOUNDS) - 1)] * 1000
    return BOUNDS[-1] * 1000
