"""What `get` shows for splitters (status from their APIs, targets, shadows) and for replicas."""

from __future__ import annotations

from typing import Any

from shipyard.runtime.local.shadow import ShadowLatency
from shipyard.runtime.local.state import Deployment, ReplicaRecord, ShadowStats
from shipyard.runtime.local.types import ReplicaState, ReplicaStatus
from shipyard.runtime.local.views import api_detail, summaries
from shipyard.runtime.local.window import Window

NOW = 10_000.0
SPLITTER = {
    "name": "front",
    "apis": [
        {"name": "stable", "weight": 80},
        {"name": "candidate", "weight": 20},
        {"name": "shadowed", "weight": 50, "shadow": True},
    ],
}


def deployment(
    name: str, kind: str = "RealtimeAPI", spec: dict[str, Any] | None = None, replicas: int = 1
) -> Deployment:
    spec = spec or {"name": name, "handler": "handlers.py:Echo"}
    return Deployment(name, kind, "v1", spec, replicas, "/src", None, 0.0, 0.0)


def record(api: str, state: ReplicaState, **fields: Any) -> ReplicaRecord:
    status = ReplicaStatus(f"{api}-1", api, "v1", state, fields.pop("started_at", NOW - 5), **fields)
    return ReplicaRecord(status, 123, 5000, f"/logs/{api}-1.log")


def deployments() -> list[Deployment]:
    apis = [deployment(name) for name in ("stable", "candidate", "shadowed")]
    return [deployment("front", "TrafficSplitter", SPLITTER, 0), *apis]


def found(replicas: list[ReplicaRecord]) -> dict[str, dict[str, Any]]:
    return summaries(deployments(), replicas, {}, "http://gw", {})


def test_a_splitter_is_live_only_when_its_apis_are() -> None:
    ready = [record(name, ReplicaState.ready) for name in ("stable", "candidate", "shadowed")]
    assert found(ready)["front"]["status"] == "live"


def test_a_splitter_whose_weighted_api_has_no_ready_replica_is_unavailable() -> None:
    replicas = [
        record("stable", ReplicaState.ready),
        record("candidate", ReplicaState.starting),
        record("shadowed", ReplicaState.ready),
    ]
    front = found(replicas)["front"]
    assert front["status"] == "unavailable"
    assert front["message"] == "candidate (weight 20) has no ready replica"


def test_a_splitter_with_a_troubled_shadow_is_degraded() -> None:
    replicas = [record("stable", ReplicaState.ready), record("candidate", ReplicaState.ready)]
    front = found(replicas)["front"]
    assert (front["status"], front["message"]) == ("degraded", "shadowed is scaling")


def test_a_splitters_detail_lists_its_targets_and_shadow_latencies() -> None:
    replicas = [record(name, ReplicaState.ready) for name in ("stable", "candidate", "shadowed")]
    apis = found(replicas)
    primary, shadow = Window(), Window()
    primary.record(NOW, 200, 0.010)
    shadow.record(NOW, 200, 0.040)
    latency = {("front", "shadowed"): ShadowLatency(primary.summary(NOW), shadow.summary(NOW))}
    stored = [ShadowStats("front", "shadowed", 4, 3, 1, 40.0, 160.0, skipped=3)]
    splitter = deployments()[0]
    detail = api_detail(apis["front"], splitter, replicas, None, [], stored, now=NOW, apis=apis, shadow_latency=latency)
    assert [(t["name"], t["weight"], t["shadow"], t["status"], t["ready"]) for t in detail["targets"]] == [
        ("stable", 80, False, "live", 1),
        ("candidate", 20, False, "live", 1),
        ("shadowed", 50, True, "live", 1),
    ]
    [row] = detail["shadows"]
    assert (row["compared"], row["agreement"], row["failed"], row["skipped"]) == (4, 0.75, 1, 3)
    assert (row["primary_mean_ms"], row["shadow_mean_ms"]) == (10.0, 40.0)
    assert 9 < row["primary_p50_ms"] < 11 and 38 < row["shadow_p99_ms"] < 42


def test_a_replica_says_how_long_it_has_been_starting() -> None:
    stuck = record("stable", ReplicaState.starting, started_at=NOW - 42)
    apis = summaries([deployment("stable")], [stuck], {}, "http://gw", {})
    detail = api_detail(apis["stable"], deployment("stable"), [stuck], None, [], [], now=NOW)
    assert detail["replicas"][0]["state"] == "starting" and detail["replicas"][0]["for_seconds"] == 42


def test_a_ready_replica_says_since_when_and_how_many_checks_it_failed() -> None:
    spec = {"name": "stable", "handler": "handlers.py:Echo", "health_check": {"failure_threshold": 2}}
    api = deployment("stable", spec=spec)

    def shown(**fields: Any) -> dict[str, Any]:
        replica = record("stable", ReplicaState.ready, started_at=NOW - 50, **fields)
        apis = summaries([api], [replica], {}, "http://gw", {})
        [row] = api_detail(apis["stable"], api, [replica], None, [], [], now=NOW)["replicas"]
        return row

    assert shown(ready_at=NOW - 30)["for_seconds"] == 30  # since it became ready, not since it started
    assert shown()["for_seconds"] == 50  # adopted: only its start is known
    slow = shown(failed_checks=1)
    assert (slow["failed_checks"], slow["in_gateway"]) == (1, True)
    gone = shown(failed_checks=2)
    assert (gone["failed_checks"], gone["in_gateway"]) == (2, False)
