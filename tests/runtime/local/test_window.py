"""The sliding window behind `get`: rate, status classes and percentiles over the last minute."""

from __future__ import annotations

import pytest

from shipyard.runtime.local.window import Window


def test_counts_classes_and_rate_over_the_span() -> None:
    window = Window(span=60)
    for second in range(30):
        window.record(1000.0 + second, 200, 0.010)
        window.record(1000.0 + second, 404, 0.001)
    window.record(1029.5, 503, 0.0001)
    summary = window.summary(1029.9)
    assert (summary.ok, summary.client_errors, summary.server_errors) == (30, 30, 1)
    assert summary.per_second == pytest.approx(61 / 60)


def test_percentiles_are_within_a_bucket() -> None:
    window = Window()
    for index in range(1000):
        window.record(50.0, 200, 0.001 if index < 990 else 0.5)
    summary = window.summary(50.0)
    assert summary.p50_ms == pytest.approx(1.0, rel=0.06)
    assert summary.p99_ms == pytest.approx(1.0, rel=0.06)
    window.record(50.0, 200, 0.5)
    for _ in range(20):
        window.record(50.0, 200, 0.5)
    assert window.summary(50.0).p99_ms == pytest.approx(500, rel=0.06)


def test_old_seconds_fall_out_and_slots_are_reused() -> None:
    window = Window(span=60)
    window.record(100.0, 200, 0.01)
    assert window.summary(159.0).requests == 1
    assert window.summary(160.0).requests == 0
    window.record(160.2, 500, 0.01)  # the same slot as second 100, reused
    summary = window.summary(160.5)
    assert (summary.requests, summary.server_errors, summary.ok) == (1, 1, 0)
    assert Window().summary(0.0).p50_ms is None
