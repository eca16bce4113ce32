"""How `get` words things: collapsed crash loops, ages, times of other days, states that last."""

from __future__ import annotations

from datetime import datetime

from shipyard.cli.deploy import _age, _detail, _model, _state, _time, collapse

NOW = datetime(2025, 6, 10, 12, 0, 0).timestamp()


def test_a_crash_loop_is_one_line_with_a_count() -> None:
    events = [
        {"at": 1.0, "kind": "scaled", "message": "scale 1 → 2", "replica": None},
        *[{"at": 2.0 + n, "kind": "crashed", "message": f"crash {n}", "replica": "api-1"} for n in range(4)],
        {"at": 9.0, "kind": "crashed", "message": "other replica", "replica": "api-2"},
    ]
    assert [e["message"] for e in collapse(events)] == ["scale 1 → 2", "crash 3 (x4)", "other replica"]


def test_events_that_are_not_flaps_are_never_collapsed() -> None:
    events = [{"at": float(n), "kind": "scaled", "message": f"s{n}", "replica": None} for n in range(3)]
    assert collapse(events) == events


def test_last_update_is_an_age_or_a_date() -> None:
    assert _age(NOW - 45, NOW) == "45s ago"
    assert _age(NOW - 180, NOW) == "3m ago"
    assert _age(NOW - 7500, NOW) == "2h05m ago"
    assert _age(NOW - 3 * 86_400, NOW) == "2025-06-07 12:00"


def test_event_times_carry_the_date_when_not_today() -> None:
    assert _time(NOW - 60, NOW) == "11:59:00"
    assert _time(NOW - 86_400, NOW) == "2025-06-09 12:00:00"


def test_a_replica_stuck_starting_says_for_how_long() -> None:
    assert _state({"state": "starting", "for_seconds": 42.3}) == "starting for 42s"
    assert _state({"state": "ready", "for_seconds": 900.0}) == "ready for 15m"


def test_a_replica_failing_its_health_checks_says_how_many_and_whether_it_left_the_gateway() -> None:
    slow = {"state": "ready", "for_seconds": 75.0, "failed_checks": 1, "in_gateway": True}
    assert _state(slow) == "ready for 1m, not answering (1 check)"
    gone = {"state": "ready", "for_seconds": 75.0, "failed_checks": 3, "in_gateway": False}
    assert _state(gone) == "ready for 1m, not answering (3 checks), out of the gateway"


def test_an_alias_that_holds_what_is_not_served_says_why() -> None:
    model = {"ref": "models:/iris@production", "name": "iris", "version": 1, "digest": "sha256:ab"}
    failing = dict(model, alias={"name": "production", "holds": 3, "error": "w.bin: expected sha256:1, found sha256:2"})
    assert _model(failing).splitlines() == [
        "model: models:/iris@production → iris:1 sha256:ab",
        "serving iris:1, alias production → iris:3: rollout failed because w.bin: expected sha256:1, found sha256:2",
    ]
    moving = dict(model, alias={"name": "production", "holds": 3, "error": None})
    assert _model(moving).endswith("serving iris:1, alias production → iris:3: rolling out")
    settled = dict(model, alias={"name": "production", "holds": 1, "error": None})
    assert _model(settled) == "model: models:/iris@production → iris:1 sha256:ab"


def test_the_detail_has_one_blank_line_between_its_sections() -> None:
    replica = {"id": "echo-1", "version": "v1", "state": "ready", "for_seconds": 3.0, "restarts": 0, "last_error": None}
    found = {"name": "echo", "status": "live", "model": None, "replicas": [replica], "events": []}
    text = _detail(found, NOW)
    assert "\n\n\n" not in text
    assert text.split("\n\n")[1].startswith("REPLICA") and text.endswith("\n\nno events")
