from __future__ import annotations

import pytest

from shipyard.spec.units import (
    parse_count_or_percent,
    parse_cpu,
    parse_duration,
    parse_size,
    resolve_count_or_percent,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(5, 5.0), ("250ms", 0.25), ("30s", 30), ("5m", 300), ("2h", 7200), ("1.5", 1.5), ("1d", 86400)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "5 minutes", -1, True, "-3s"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "size"),
    [(10, 10), ("10Mi", 10 * 1024**2), ("512KB", 512_000), ("1Gi", 1024**3), ("2k", 2000), ("100B", 100)],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


def test_cpu_and_percent() -> None:
    assert parse_cpu("500m") == 0.5
    assert parse_cpu(2) == 2.0
    with pytest.raises(ValueError, match="cores"):
        parse_cpu("fast")
    assert parse_count_or_percent("25%") == "25%"
    assert parse_count_or_percent("3") == 3
    with pytest.raises(ValueError, match="percentage"):
        parse_count_or_percent("120%")
    assert resolve_count_or_percent("25%", 3, round_up=True) == 1
    assert resolve_count_or_percent("25%", 3, round_up=False) == 0
    assert resolve_count_or_percent(2, 10, round_up=False) == 2
