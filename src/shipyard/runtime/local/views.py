"""What `get` shows, as JSON-able dicts built from stored rows and the daemon's latest view. Pure.

A splitter's status comes from its APIs': `live` when every one is live, `degraded` when each API with a
weight has a ready replica but some API is not live, `unavailable` when an API with a weight has none (the
requests routed to it are refused).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shipyard.runtime.local.aliases import Following
from shipyard.runtime.local.gateway import Traffic
from shipyard.runtime.local.shadow import Pair, ShadowLatency
from shipyard.runtime.local.state import Deployment, Event, ReleaseRow, ReplicaRecord, ShadowStats
from shipyard.runtime.local.status import summarize
from shipyard.runtime.local.types import DesiredAPI, ReplicaState
from shipyard.runtime.local.window import Summary
from shipyard.spec.models import TrafficSplitter


def summaries(
    deployments: Sequence[Deployment],
    replicas: Sequence[ReplicaRecord],
    traffic: Mapping[str, Traffic],
    gateway_url: str,
    updates: Mapping[str, float | None],
) -> dict[str, dict[str, Any]]:
    """Every API's summary by name; splitters after the APIs whose status makes theirs."""
    found: dict[str, dict[str, Any]] = {}
    for deployment in sorted(deployments, key=lambda d: not d.is_realtime):
        found[deployment.name] = api_summary(
            deployment, replicas, traffic.get(deployment.name), gateway_url, updates.get(deployment.name), found
        )
    return found


def api_summary(
    deployment: Deployment,
    replicas: Sequence[ReplicaRecord],
    traffic: Traffic | None,
    gateway_url: str,
    last_update: float | None,
    apis: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One API's summary; a splitter's needs the summaries of its `apis`."""
    found = {
        "name": deployment.name,
        "kind": deployment.kind,
        "version": deployment.version,
        "endpoint": f"{gateway_url}/{deployment.name}",
        "updated_at": max(deployment.updated_at, last_update or 0.0),
    }
    if deployment.is_realtime:
        found |= _counts(deployment, replicas)
    else:
        found |= _splitter_status(deployment, apis or {})
    found |= _traffic(traffic)
    return found


def _counts(deployment: Deployment, replicas: Sequence[ReplicaRecord]) -> dict[str, Any]:
    desired = DesiredAPI(deployment.name, deployment.version, deployment.replicas)
    summary = summarize(desired, [r.status for r in replicas if r.status.api == deployment.name])
    return {
        "status": summary.phase.value,
        "message": summary.message,
        "desired": summary.desired,
        "ready": summary.ready,
        "up_to_date": summary.up_to_date,
    }


def _splitter_status(deployment: Deployment, apis: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    targets = splitter_targets(deployment, apis)
    unserved = [t for t in targets if not t["shadow"] and t["weight"] > 0 and not t["ready"]]
    troubled = [t for t in targets if t["status"] != "live"]
    if unserved:
        status = "unavailable"
        message = "; ".join(f"{t['name']} (weight {t['weight']:g}) has no ready replica" for t in unserved)
    elif troubled:
        status, message = "degraded", "; ".join(f"{t['name']} is {t['status']}" for t in troubled)
    else:
        status, message = "live", None
    return {"status": status, "message": message, "desired": None, "ready": None, "up_to_date": None}


def splitter_targets(deployment: Deployment, apis: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The splitter's APIs with their weights and health."""
    targets = []
    for target in deployment.splitter().apis:
        api = apis.get(target.name, {})
        targets.append(
            {
                "name": target.name,
                "weight": target.weight,
                "shadow": target.shadow,
                "status": api.get("status", "not deployed"),
                "ready": api.get("ready") or 0,
                "desired": api.get("desired") or 0,
            }
        )
    return targets


def _traffic(traffic: Traffic | None) -> dict[str, Any]:
    minute = traffic.last_minute if traffic else None
    return {
        "requests_per_second": round(minute.per_second, 3) if minute else 0.0,
        "p50_ms": _rounded(minute.p50_ms) if minute else None,
        "p99_ms": _rounded(minute.p99_ms) if minute else None,
        "2xx": minute.ok if minute else 0,
        "4xx": minute.client_errors if minute else 0,
        "5xx": minute.server_errors if minute else 0,
        "in_flight": traffic.in_flight if traffic else 0,
        "queued": traffic.queued if traffic else 0,
    }


def api_detail(
    summary: dict[str, Any],
    deployment: Deployment,
    replicas: Sequence[ReplicaRecord],
    release: ReleaseRow | None,
    events: Sequence[Event],
    shadows: Sequence[ShadowStats],
    *,
    now: float,
    apis: Mapping[str, dict[str, Any]] | None = None,
    shadow_latency: Mapping[Pair, ShadowLatency] | None = None,
    following: Following | None = None,
) -> dict[str, Any]:
    """One API in detail; `following`: what the alias it follows holds, when it follows one."""
    detail = dict(summary)
    threshold = deployment.realtime().health_check.failure_threshold if deployment.is_realtime else 1
    detail["replicas"] = [_replica(r, now, threshold) for r in replicas if r.status.api == deployment.name]
    detail["model"] = _model(deployment, release, following)
    detail["events"] = [{"at": e.at, "kind": e.kind, "message": e.message, "replica": e.replica} for e in events]
    detail["source"] = deployment.source
    detail["spec"] = deployment.spec
    if not deployment.is_realtime:
        detail["targets"] = splitter_targets(deployment, apis or {})
        latency = shadow_latency or {}
        detail["shadows"] = shadow_rows(deployment.name, deployment.splitter(), shadows, latency)
    return detail


def _replica(record: ReplicaRecord, now: float, threshold: int) -> dict[str, Any]:
    """A replica as `get API` shows it; `threshold`: its API's health_check.failure_threshold."""
    status = record.status
    since = status.started_at
    if status.state is ReplicaState.draining and status.draining_since is not None:
        since = status.draining_since
    elif status.state in (ReplicaState.crashed, ReplicaState.crash_looping) and status.exited_at is not None:
        since = status.exited_at
    elif status.state is ReplicaState.ready and status.ready_at is not None:
        since = status.ready_at
    ready = status.state is ReplicaState.ready
    return {
        "id": status.id,
        "version": status.version,
        "state": status.state.value,
        "for_seconds": round(max(0.0, now - since), 1),
        "failed_checks": status.failed_checks if ready else 0,
        "in_gateway": ready and status.failed_checks < threshold,
        "pid": record.pid,
        "port": record.port,
        "started_at": status.started_at,
        "restarts": status.restarts,
        "restart_at": status.restart_at,
        "last_error": status.last_error,
        "log": record.log,
    }


def _model(deployment: Deployment, release: ReleaseRow | None, following: Following | None) -> dict[str, Any] | None:
    if release is None or deployment.model_ref is None:
        return None
    alias = None
    if following is not None:
        alias = {"name": following.alias, "holds": following.holds, "error": following.error}
    return {
        "ref": deployment.model_ref,
        "name": release.model_name,
        "version": release.model_version,
        "digest": release.model_digest,
        "alias": alias,
    }


def shadow_rows(
    name: str, spec: TrafficSplitter, stored: Sequence[ShadowStats], latency: Mapping[Pair, ShadowLatency]
) -> list[dict[str, Any]]:
    """One row per shadow of the splitter: stored totals (copies compared, agreed, failed and skipped for
    lack of a free shadow replica, and mean latencies), plus the last minute's percentiles."""
    totals = {s.shadow: s for s in stored}
    shadows = [t.name for t in spec.apis if t.shadow] + sorted(set(totals) - {t.name for t in spec.apis})
    return [_shadow(totals.get(shadow) or ShadowStats(name, shadow, 0, 0, 0, 0.0, 0.0), latency) for shadow in shadows]


def _shadow(stats: ShadowStats, latency: Mapping[Pair, ShadowLatency]) -> dict[str, Any]:
    compared = stats.compared
    recent = latency.get((stats.splitter, stats.shadow))
    primary: Summary | None = recent.primary if recent else None
    shadow: Summary | None = recent.shadow if recent else None
    return {
        "shadow": stats.shadow,
        "compared": compared,
        "agreement": round(stats.agreed / compared, 4) if compared else None,
        "failed": stats.failed,
        "skipped": stats.skipped,
        "primary_mean_ms": _rounded(stats.primary_ms / compared) if compared else None,
        "shadow_mean_ms": _rounded(stats.shadow_ms / compared) if compared else None,
        "primary_p50_ms": _rounded(primary.p50_ms) if primary else None,
        "primary_p99_ms": _rounded(primary.p99_ms) if primary else None,
        "shadow_p50_ms": _rounded(shadow.p50_ms) if shadow else None,
        "shadow_p99_ms": _rounded(shadow.p99_ms) if shadow else None,
    }


def _rounded(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def index(found: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [found[name] for name in sorted(found)]
