"""When the runner replaces a worker: the pure health rule (lease expiry, batch_timeout, heartbeat)."""

from __future__ import annotations

import pytest

from shipyard.jobs.pool import STARTUP_GRACE, why_unhealthy
from shipyard.jobs.queue import Holding

NOW = 10_000.0
TTL = 30.0
LIMIT = 600.0


@pytest.mark.parametrize(
    ("age", "beat_age", "holding", "reason"),
    [
        (100, 5, None, None),
        (100, 5, Holding(3, "w", NOW - 20, NOW + 10, None), None),
        (100, 5, Holding(3, "w", NOW - 20, NOW - 1, None), "it holds batch 3 past its lease's expiry"),
        (900, 5, Holding(3, "w", NOW - 601, NOW + 10, None), "batch 3 ran longer than batch_timeout (600s)"),
        (900, 5, Holding(3, "w", NOW - 601, NOW + 10, 7), "row 7 of batch 3 ran longer than batch_timeout (600s)"),
        (900, 5, Holding(3, "w", None, NOW + 10, None), None),
        (100, 31, None, "its heartbeat stopped 31s ago (it is hung or stopped)"),
        (STARTUP_GRACE - 1, None, None, None),
        (STARTUP_GRACE + 1, None, None, f"it has not beaten once in {STARTUP_GRACE + 1:.0f}s"),
    ],
)
def test_why_unhealthy(age: float, beat_age: float | None, holding: Holding | None, reason: str | None) -> None:
    found = why_unhealthy(age, beat_age, holding, NOW, TTL, LIMIT)
    assert found == reason or (reason is not None and found is not None and found.startswith(reason))
