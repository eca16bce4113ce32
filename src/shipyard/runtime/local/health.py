"""What a health check's answer means for a replica's traffic. Pure.

One slow answer must not take a working replica out of the gateway: a handler that holds the GIL for a
second delays `/readyz` as much as it delays everything else, while the replica is doing its job. So a
ready replica leaves the routes only after `failure_threshold` failed checks in a row, and comes back
with the next check that passes. A refused connection is different: nothing listens at the replica's
port, its process is gone or going, and it leaves at once. A check that has not answered yet is no news
either way; how long a replica goes without a passing check is what `unhealthy_after` measures.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Check(StrEnum):
    ok = "ok"  #: /readyz answered 200
    failed = "failed"  #: it answered something else, or nothing within the check's timeout
    refused = "refused"  #: nothing listens at its port: the process is gone or going


@dataclass(frozen=True)
class CheckPolicy:
    """An API's `health_check` settings, as the supervisor applies them."""

    timeout: float = 1.0
    failure_threshold: int = 3


@dataclass(frozen=True)
class Health:
    failures: int = 0
    """Checks failed in a row since the last one that passed."""
    is_answering: bool = False
    """It gets traffic (if ready): its last check passed, or fewer than the threshold failed since."""


def judged(health: Health, check: Check, threshold: int) -> Health:
    """The replica's health after one more check."""
    if check is Check.ok:
        return Health(0, True)
    failures = health.failures + 1
    if check is Check.refused:
        return Health(failures, False)
    return Health(failures, health.is_answering and failures < threshold)
