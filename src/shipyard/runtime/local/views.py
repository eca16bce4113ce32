"""What `get` shows, as JSON-able dicts built from stored rows and the daemon's latest view. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shipyard.runtime.local.gateway import Traffic
from shipyard.runtime.local.state import Deployment, Event, ReleaseRow, ReplicaRecord, ShadowStats
from shipyard.runtime.local.status import summarize
from shipyard.runtime.local.types import DesiredAPI


def api_summary(
    deployment: Deployment,
    replicas: Sequence[ReplicaRecord],
    traffic: Traffic | None,
    gateway_url: str,
    last_update: float | None,
) -> dict[str, Any]:
    found = {
        "name": deployment.name,
        "kind": deployment.kind,
        "version": deployment.version,
        "endpoint": f"{gateway_url}/{deployment.name}",
        "updated_at": max(deployment.updated_at, last_update or 0.0),
    }
    found |= _counts(deployment, replicas)
    found |= _traffic(traffic)
    return found


def _counts(deployment: Deployment, replicas: Sequence[ReplicaRecord]) -> dict[str, Any]:
    if not deployment.is_realtime:
        return {"status": "live", "message": None, "desired": None, "ready": None, "up_to_date": None}
    desired = DesiredAPI(deployment.name, deployment.version, deployment.replicas)
    summary = summarize(desired, [r.status for r in replicas if r.status.api == deployment.name])
    return {
        "status": summary.phase.value,
        "message": summary.message,
        "desired": summary.desired,
        "ready": summary.ready,
        "up_to_date": summary.up_to_date,
    }


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
) -> dict[str, Any]:
    detail = dict(summary)
    detail["replicas"] = [_replica(r) for r in replicas if r.status.api == deployment.name]
    detail["model"] = _model(deployment, release)
    detail["events"] = [{"at": e.at, "kind": e.kind, "message": e.message, "replica": e.replica} for e in events]
    detail["source"] = deployment.source
    detail["spec"] = deployment.spec
    if not deployment.is_realtime:
        detail["shadows"] = [_shadow(s) for s in shadows]
    return detail


def _replica(record: ReplicaRecord) -> dict[str, Any]:
    status = record.status
    return {
        "id": status.id,
        "version": status.version,
        "state": status.state.value,
        "pid": record.pid,
        "port": record.port,
        "started_at": status.started_at,
        "restarts": status.restarts,
        "last_error": status.last_error,
        "log": record.log,
    }


def _model(deployment: Deployment, release: ReleaseRow | None) -> dict[str, Any] | None:
    if release is None or deployment.model_ref is None:
        return None
    return {
        "ref": deployment.model_ref,
        "name": release.model_name,
        "version": release.model_version,
        "digest": release.model_digest,
    }


def _shadow(stats: ShadowStats) -> dict[str, Any]:
    compared = stats.compared
    return {
        "shadow": stats.shadow,
        "compared": compared,
        "agreement": round(stats.agreed / compared, 4) if compared else None,
        "failed": stats.failed,
        "primary_mean_ms": _rounded(stats.primary_ms / compared) if compared else None,
        "shadow_mean_ms": _rounded(stats.shadow_ms / compared) if compared else None,
    }


def _rounded(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def index(found: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [found[name] for name in sorted(found)]
