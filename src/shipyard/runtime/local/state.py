"""The runtime's rows in the store: deployments, releases, replicas, recommendations, events, shadow stats.

Plain functions over a connection, so one transaction can hold several of them. Reads that decide a
write run inside `write_transaction()` (SQLite takes the write lock up front).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from shipyard.errors import NotFound
from shipyard.runtime.local.errors import APIInUse, APINotFound, APIOwnedElsewhere
from shipyard.runtime.local.release import Release
from shipyard.runtime.local.types import ReplicaState, ReplicaStatus
from shipyard.spec.models import RealtimeAPI, TrafficSplitter
from shipyard.store.tables import deployments, events, recommendations, releases, replicas, shadow_stats

REFRESH_MARK = "+"
"""A refreshed version is `<version>+<n>`: same release, new replicas."""


class Outcome(StrEnum):
    created = "created"  #: a new API
    rolling = "rolling out"  #: a new version replaces the running one
    updated = "updated"  #: settings that need no new replicas (autoscaling, update strategy)
    unchanged = "unchanged"  #: nothing to do


@dataclass(frozen=True)
class Deployment:
    name: str
    kind: str
    version: str
    spec: dict[str, Any]
    replicas: int
    source: str
    model_ref: str | None
    created_at: float
    updated_at: float

    def realtime(self) -> RealtimeAPI:
        return RealtimeAPI.model_validate(self.spec)

    def splitter(self) -> TrafficSplitter:
        return TrafficSplitter.model_validate({"kind": "TrafficSplitter", **self.spec})

    @property
    def is_realtime(self) -> bool:
        return self.kind == "RealtimeAPI"


@dataclass(frozen=True)
class ReleaseRow:
    api: str
    version: str
    project: str
    """The spec file inside the snapshot that replicas of this release serve."""
    grace_period: float
    timeout: float
    """The API's request `timeout`."""
    model_name: str | None
    model_version: int | None
    model_digest: str | None


@dataclass(frozen=True)
class ReplicaRecord:
    """A replica as persisted: its status plus where its process is."""

    status: ReplicaStatus
    pid: int | None
    port: int
    log: str


@dataclass(frozen=True)
class Event:
    at: float
    api: str
    kind: str
    message: str
    replica: str | None = None


# -- deployments and releases --------------------------------------------------------------------------------


def list_deployments(connection: Connection) -> list[Deployment]:
    rows = connection.execute(select(deployments).order_by(deployments.c.name)).all()
    return [Deployment(**row._asdict()) for row in rows]


def get_deployment(connection: Connection, name: str) -> Deployment:
    row = connection.execute(select(deployments).where(deployments.c.name == name)).first()
    if row is None:
        raise APINotFound(name, [d.name for d in list_deployments(connection)])
    return Deployment(**row._asdict())


def record_release(
    connection: Connection, release: Release, project: str, source: str, now: float, *, force: bool = False
) -> Outcome:
    """Make `release` the desired state of its API; the outcome says what changes.

    An API of that name deployed from another project is refused (APIOwnedElsewhere) unless `force`.
    """
    row = connection.execute(select(deployments).where(deployments.c.name == release.name)).first()
    if row is not None and not force and project_of(row.source) != project_of(source):
        raise APIOwnedElsewhere(release.name, project_of(row.source), project_of(source))
    insert_release(connection, release, project)
    if row is None:
        replicas = _initial_replicas(release)
        values = _deployment_values(release, source, now) | {"replicas": replicas, "created_at": now}
        connection.execute(insert(deployments).values(**values))
        return Outcome.created
    current = Deployment(**row._asdict())
    same_version = current.version.split(REFRESH_MARK)[0] == release.version and current.kind == release.kind
    if same_version and current.spec == release.spec:
        if project_of(current.source) != project_of(source):  # taken over (--force): it is the new project's now
            connection.execute(update(deployments).where(deployments.c.name == release.name).values(source=source))
        return Outcome.unchanged
    values = _deployment_values(release, source, now) | {"replicas": _clamped(release, current.replicas)}
    if same_version:
        values["version"] = current.version  # keep a refresh's version: nothing to restart
    connection.execute(update(deployments).where(deployments.c.name == release.name).values(**values))
    return Outcome.updated if same_version else Outcome.rolling


def project_of(source: str) -> str:
    """The project directory a deploy's source names (the directory itself, or the one a yaml file is in)."""
    path = Path(source)
    return str(path.parent if path.suffix in (".yaml", ".yml") else path)


def _deployment_values(release: Release, source: str, now: float) -> dict[str, Any]:
    return {
        "name": release.name,
        "kind": release.kind,
        "version": release.version,
        "spec": release.spec,
        "source": source,
        "model_ref": release.model_ref,
        "updated_at": now,
    }


def insert_release(connection: Connection, release: Release, project: str) -> None:
    exists = connection.execute(
        select(releases.c.api).where(releases.c.api == release.name, releases.c.version == release.version)
    ).first()
    if exists is not None:
        return
    model = release.model
    connection.execute(
        insert(releases).values(
            api=release.name,
            version=release.version,
            project=project,
            spec=release.spec,
            model_name=model.name if model else None,
            model_version=model.version if model else None,
            model_digest=model.digest if model else None,
            created_at=0.0,
        )
    )


def _initial_replicas(release: Release) -> int:
    if not release.is_realtime:
        return 0
    scaling = RealtimeAPI.model_validate(release.spec).autoscaling
    return scaling.init_replicas if scaling.init_replicas is not None else scaling.min_replicas


def _clamped(release: Release, replicas: int) -> int:
    if not release.is_realtime:
        return 0
    scaling = RealtimeAPI.model_validate(release.spec).autoscaling
    return min(max(replicas, scaling.min_replicas), scaling.max_replicas)


def get_release(connection: Connection, api: str, version: str) -> ReleaseRow:
    row = connection.execute(select(releases).where(releases.c.api == api, releases.c.version == version)).first()
    if row is None:
        raise NotFound(f"API {api!r} has no release {version!r}; deploy the project again")
    spec = RealtimeAPI.model_validate(row.spec)
    return ReleaseRow(
        row.api,
        row.version,
        row.project,
        float(spec.grace_period),
        float(spec.timeout),
        row.model_name,
        row.model_version,
        row.model_digest,
    )


def refresh(connection: Connection, name: str, now: float) -> str:
    """Give an API a new version of the same release, so every replica is replaced; returns it."""
    current = get_deployment(connection, name)
    base, _, count = current.version.partition(REFRESH_MARK)
    version = f"{base}{REFRESH_MARK}{int(count or 0) + 1}"
    original = connection.execute(
        select(releases).where(releases.c.api == name, releases.c.version == current.version)
    ).one()
    connection.execute(insert(releases).values(**(original._asdict() | {"version": version})))
    connection.execute(update(deployments).where(deployments.c.name == name).values(version=version, updated_at=now))
    return version


def delete_deployment(connection: Connection, name: str) -> None:
    get_deployment(connection, name)
    users = [
        d.name
        for d in list_deployments(connection)
        if not d.is_realtime and any(target.name == name for target in d.splitter().apis)
    ]
    if users:
        raise APIInUse(name, users)
    connection.execute(delete(deployments).where(deployments.c.name == name))
    connection.execute(delete(recommendations).where(recommendations.c.api == name))


def set_replicas(connection: Connection, name: str, count: int) -> None:
    connection.execute(update(deployments).where(deployments.c.name == name).values(replicas=count))


# -- replicas ------------------------------------------------------------------------------------------------


def load_replicas(connection: Connection) -> list[ReplicaRecord]:
    return [_record(row) for row in connection.execute(select(replicas).order_by(replicas.c.started_at))]


def save_replicas(connection: Connection, records: Iterable[ReplicaRecord]) -> None:
    """Replace the stored replicas with `records`."""
    connection.execute(delete(replicas))
    rows = [_row(record) for record in records]
    if rows:
        connection.execute(insert(replicas), rows)


def _record(row: Any) -> ReplicaRecord:
    status = ReplicaStatus(
        id=row.id,
        api=row.api,
        version=row.version,
        state=ReplicaState(row.state),
        started_at=row.started_at,
        healthy_at=row.healthy_at,
        grace_period=row.grace_period,
        restarts=row.restarts,
        last_error=row.last_error,
        exited_at=row.exited_at,
        restart_at=row.restart_at,
        draining_since=row.draining_since,
    )
    return ReplicaRecord(status, row.pid, row.port, row.log)


def _row(record: ReplicaRecord) -> dict[str, Any]:
    status = record.status
    return {
        "id": status.id,
        "api": status.api,
        "version": status.version,
        "state": status.state.value,
        "pid": record.pid,
        "port": record.port,
        "log": record.log,
        "started_at": status.started_at,
        "healthy_at": status.healthy_at,
        "grace_period": status.grace_period,
        "restarts": status.restarts,
        "last_error": status.last_error,
        "exited_at": status.exited_at,
        "restart_at": status.restart_at,
        "draining_since": status.draining_since,
    }


# -- events, recommendations, shadow statistics ----------------------------------------------------------------


def record_events(connection: Connection, new: Iterable[Event]) -> None:
    rows = [{"at": e.at, "api": e.api, "kind": e.kind, "message": e.message, "replica": e.replica} for e in new]
    if rows:
        connection.execute(insert(events), rows)


KEPT_SCALING_EVENTS = 5
"""`recent_events` always includes this many of the last scaling decisions, however many events came since."""


def recent_events(connection: Connection, api: str, limit: int = 20) -> list[Event]:
    """The last `limit` events, oldest first, plus the last few scaling decisions even when older ones."""
    newest = select(events).where(events.c.api == api).order_by(events.c.id.desc()).limit(limit)
    scaled = (
        select(events)
        .where(events.c.api == api, events.c.kind == "scaled")
        .order_by(events.c.id.desc())
        .limit(KEPT_SCALING_EVENTS)
    )
    rows = {row.id: row for query in (newest, scaled) for row in connection.execute(query)}
    return [Event(row.at, row.api, row.kind, row.message, row.replica) for _, row in sorted(rows.items())]


def last_of_kinds(connection: Connection, kinds: Iterable[str]) -> dict[str, str]:
    """Per API, the kind of its newest event among `kinds`."""
    newest = select(func.max(events.c.id)).where(events.c.kind.in_(list(kinds))).group_by(events.c.api)
    rows = connection.execute(select(events.c.api, events.c.kind).where(events.c.id.in_(newest)))
    return {row.api: row.kind for row in rows}


def last_event_at(connection: Connection, api: str) -> float | None:
    value = connection.execute(select(func.max(events.c.at)).where(events.c.api == api)).scalar()
    return float(value) if value is not None else None


def save_recommendation(connection: Connection, api: str, at: float, count: int, horizon: float) -> None:
    connection.execute(insert(recommendations).values(api=api, at=at, replicas=count))
    connection.execute(delete(recommendations).where(recommendations.c.api == api, recommendations.c.at < horizon))


def load_recommendations(connection: Connection) -> dict[str, list[tuple[float, int]]]:
    found: dict[str, list[tuple[float, int]]] = {}
    for row in connection.execute(select(recommendations).order_by(recommendations.c.at)):
        found.setdefault(row.api, []).append((row.at, row.replicas))
    return found


@dataclass(frozen=True)
class ShadowStats:
    splitter: str
    shadow: str
    compared: int
    agreed: int
    failed: int
    primary_ms: float
    """Total latency of the primaries whose answers were compared."""
    shadow_ms: float
    skipped: int = 0
    """Copies not sent because no shadow replica had a free slot (a shadow never queues)."""


def add_shadow_stats(connection: Connection, delta: ShadowStats, now: float) -> None:
    key = (shadow_stats.c.splitter == delta.splitter) & (shadow_stats.c.shadow == delta.shadow)
    row = connection.execute(select(shadow_stats).where(key)).first()
    if row is None:
        connection.execute(insert(shadow_stats).values(**vars(delta), updated_at=now))
        return
    connection.execute(
        update(shadow_stats)
        .where(key)
        .values(
            compared=row.compared + delta.compared,
            agreed=row.agreed + delta.agreed,
            failed=row.failed + delta.failed,
            skipped=row.skipped + delta.skipped,
            primary_ms=row.primary_ms + delta.primary_ms,
            shadow_ms=row.shadow_ms + delta.shadow_ms,
            updated_at=now,
        )
    )


def get_shadow_stats(connection: Connection, splitter: str) -> list[ShadowStats]:
    rows = connection.execute(select(shadow_stats).where(shadow_stats.c.splitter == splitter))
    return [
        ShadowStats(r.splitter, r.shadow, r.compared, r.agreed, r.failed, r.primary_ms, r.shadow_ms, r.skipped)
        for r in rows
    ]
