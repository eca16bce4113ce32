"""What health-check answers do to a replica's traffic: one slow answer is not a failure, a refusal is."""

from __future__ import annotations

from functools import reduce

import pytest
from pydantic import ValidationError

from shipyard.runtime.local.health import Check, Health, judged
from shipyard.spec.models import HealthCheck

READY = Health(0, True)


def after(health: Health, *checks: Check, threshold: int = 3) -> Health:
    return reduce(lambda found, check: judged(found, check, threshold), checks, health)


def test_a_ready_replica_keeps_its_traffic_until_threshold_checks_fail_in_a_row() -> None:
    assert after(READY, Check.failed) == Health(1, True)
    assert after(READY, Check.failed, Check.failed) == Health(2, True)
    assert after(READY, Check.failed, Check.failed, Check.failed) == Health(3, False)


def test_a_passing_check_brings_it_back_and_starts_the_count_over() -> None:
    out = after(READY, Check.failed, Check.failed, Check.failed)
    assert after(out, Check.ok) == READY
    assert after(READY, Check.failed, Check.failed, Check.ok, Check.failed, Check.failed) == Health(2, True)


def test_a_refused_connection_takes_it_out_at_once() -> None:
    assert after(READY, Check.refused) == Health(1, False)
    assert after(READY, Check.refused, Check.failed) == Health(2, False)  # no way back but a passing check


def test_the_threshold_is_the_apis() -> None:
    assert after(READY, Check.failed, threshold=1) == Health(1, False)
    assert after(READY, *[Check.failed] * 9, threshold=10) == Health(9, True)


def test_a_starting_replica_answers_only_once_a_check_passes() -> None:
    starting = Health()
    assert after(starting, Check.refused, Check.failed) == Health(2, False)
    assert after(starting, Check.refused, Check.ok) == READY


def test_a_check_timeout_is_capped_and_the_threshold_defaults_to_three() -> None:
    assert HealthCheck().failure_threshold == 3
    assert HealthCheck.model_validate({"timeout": "60s"}).timeout == 60
    with pytest.raises(ValidationError, match="less than or equal to 60"):
        HealthCheck.model_validate({"timeout": "61s"})
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        HealthCheck.model_validate({"failure_threshold": 0})
