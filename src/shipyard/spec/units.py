"""Human-friendly quantities in shipyard.yaml: durations (`250ms`, `30s`, `5m`), sizes (`10Mi`, `1GB`), percents."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?|[KMGT]B|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "ki": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mi": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gi": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "ti": 1024**4,
}


def parse_duration(value: Any) -> float:
    """Seconds from a number of seconds or a string such as `250ms`, `30s`, `5m`, `2h`."""
    if isinstance(value, bool):
        raise ValueError(f"must be a duration such as 30s, 250ms or 5m, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"must be a duration >= 0, got {value!r}")
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"must be a duration such as 30s, 250ms or 5m, got {value!r}")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_size(value: Any) -> int:
    """Bytes from an integer or a string such as `10Mi`, `512KB`, `1Gi`."""
    if isinstance(value, bool):
        raise ValueError(f"must be a size such as 10Mi or 512KB, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must be a size >= 0, got {value!r}")
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"must be a size such as 10Mi, 512KB or 1Gi, got {value!r}")
    return int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower()])


def parse_cpu(value: Any) -> float:
    """Cores from a number or Kubernetes-style millicores (`500m`)."""
    if isinstance(value, bool):
        raise ValueError(f"must be a number of cores such as 1, 0.5 or 500m, got {value!r}")
    if isinstance(value, int | float):
        result = float(value)
    else:
        text = str(value).strip()
        try:
            result = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
        except ValueError:
            raise ValueError(f"must be a number of cores such as 1, 0.5 or 500m, got {value!r}") from None
    if result < 0:
        raise ValueError(f"must be a number of cores >= 0, got {value!r}")
    return result


def parse_count_or_percent(value: Any) -> int | str:
    """A replica count (`1`) or a percentage of the desired replicas (`25%`), as in Kubernetes."""
    if isinstance(value, bool):
        raise ValueError(f"must be a count such as 1 or a percentage such as 25%, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must be >= 0, got {value!r}")
        return value
    text = str(value).strip()
    if text.endswith("%") and text[:-1].isdigit() and 0 <= int(text[:-1]) <= 100:
        return text
    if text.isdigit():
        return int(text)
    raise ValueError(f"must be a count such as 1 or a percentage from 0% to 100%, got {value!r}")


def resolve_count_or_percent(value: int | str, total: int, *, round_up: bool) -> int:
    """Turn `25%` of `total` into a count, rounding up (surge) or down (unavailable) like Kubernetes."""
    if isinstance(value, int):
        return value
    share = int(value[:-1]) * total
    return -(-share // 100) if round_up else share // 100


Duration = Annotated[float, BeforeValidator(parse_duration), PlainSerializer(lambda v: v, return_type=float)]
"""Seconds, written in YAML as a number or as `250ms`, `30s`, `5m`, `2h`, `1d`."""

ByteSize = Annotated[int, BeforeValidator(parse_size)]
"""Bytes, written in YAML as an integer or as `10Mi`, `512KB`, `1Gi`."""

Cpu = Annotated[float, BeforeValidator(parse_cpu)]
"""Cores, written in YAML as a number or as millicores (`500m`)."""

CountOrPercent = Annotated[int | str, BeforeValidator(parse_count_or_percent)]
"""A count of replicas or a percentage of the desired count."""
