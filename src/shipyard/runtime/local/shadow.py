"""The shadow comparison: how often a shadow API answered like the primary, and how their latencies compare.

Both latencies are measured the same way, from the moment the request was sent to a replica to its
answer, so the primary's wait in the gateway's queue never makes the shadow look faster. A copy that found
no free shadow replica is *skipped* (a shadow never queues); one whose replica failed is *failed*; only
copies answered on both sides are *compared*. Pure bookkeeping, no I/O.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson

from shipyard.runtime.local.state import ShadowStats
from shipyard.runtime.local.window import Summary, Window

Pair = tuple[str, str]
"""(splitter, shadow API)."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    seconds: float
    """From sending to the replica to the answer; the gateway's queue not included."""


@dataclass
class _Totals:
    compared: int = 0
    agreed: int = 0
    failed: int = 0
    skipped: int = 0
    primary_ms: float = 0.0
    shadow_ms: float = 0.0


@dataclass(frozen=True)
class ShadowLatency:
    """The last minute of one pair: latency percentiles of both sides."""

    primary: Summary
    shadow: Summary


class ShadowBook:
    def __init__(self) -> None:
        self._totals: dict[Pair, _Totals] = {}
        self._windows: dict[Pair, tuple[Window, Window]] = {}

    def skipped(self, pair: Pair) -> None:
        self._totals.setdefault(pair, _Totals()).skipped += 1

    def failed(self, pair: Pair) -> None:
        self._totals.setdefault(pair, _Totals()).failed += 1

    def compare(self, pair: Pair, primary: Answer, shadow: Answer, now: float | None = None) -> None:
        totals = self._totals.setdefault(pair, _Totals())
        totals.compared += 1
        totals.agreed += agree(primary, shadow)
        totals.primary_ms += primary.seconds * 1000
        totals.shadow_ms += shadow.seconds * 1000
        at = time.time() if now is None else now
        primary_window, shadow_window = self._windows.setdefault(pair, (Window(), Window()))
        primary_window.record(at, primary.status, primary.seconds)
        shadow_window.record(at, shadow.status, shadow.seconds)

    def take(self) -> tuple[ShadowStats, ...]:
        """The totals since the last call, to add to the stored ones."""
        deltas = tuple(
            ShadowStats(splitter, shadow, t.compared, t.agreed, t.failed, t.primary_ms, t.shadow_ms, t.skipped)
            for (splitter, shadow), t in self._totals.items()
            if t.compared or t.failed or t.skipped
        )
        self._totals.clear()
        return deltas

    def latency(self, now: float) -> dict[Pair, ShadowLatency]:
        return {
            pair: ShadowLatency(primary.summary(now), shadow.summary(now))
            for pair, (primary, shadow) in self._windows.items()
        }


def agree(primary: Answer, shadow: Answer) -> bool:
    """Same status, and bodies equal as JSON (or byte for byte when they are not JSON)."""
    if primary.status != shadow.status:
        return False
    if primary.body == shadow.body:
        return True
    try:
        return bool(orjson.loads(primary.body) == orjson.loads(shadow.body))
    except orjson.JSONDecodeError:
        return False
