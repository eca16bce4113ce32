"""Models and their versions in the store: create (numbers assigned atomically), read, list, delete."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from shipyard.registry.errors import (
    AliasNotFound,
    DamagedVersionRecord,
    ModelNotFound,
    UnknownDigest,
    VersionInUse,
    VersionNotFound,
)
from shipyard.registry.manifest import Manifest
from shipyard.registry.refs import ModelRef
from shipyard.store.tables import deployments, model_aliases, model_versions, registered_models, releases


@dataclass(frozen=True)
class NewVersion:
    """What a registration records besides the number, which the store assigns."""

    manifest: Manifest
    created_by: str
    flavor: str | None = None
    description: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] | None = None


@dataclass(frozen=True)
class ModelVersion:
    id: int
    model_id: int
    name: str
    version: int
    digest: str
    size: int
    manifest: Manifest
    flavor: str | None
    description: str
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    lineage: dict[str, Any]
    profile: dict[str, Any] | None
    created_at: datetime
    created_by: str
    aliases: tuple[str, ...] = ()
    damaged: str | None = None
    """Set (to why) on a record read without its integrity check whose manifest does not hash to its digest:
    nothing may be loaded or promoted from it, but it can be listed, moved off and deleted."""

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    def to_dict(self, *, full: bool = True) -> dict[str, Any]:
        """JSON-able form; `full=False` leaves out the manifest, lineage and profile."""
        data: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "digest": self.digest,
            "size": self.size,
            "flavor": self.flavor,
            "description": self.description,
            "metrics": self.metrics,
            "params": self.params,
            "tags": self.tags,
            "aliases": list(self.aliases),
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "damaged": self.damaged,
        }
        if full:
            data["files"] = [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in self.manifest.files]
            data["lineage"] = self.lineage
            data["profile"] = self.profile
        return data


@dataclass(frozen=True)
class ModelSummary:
    name: str
    versions: int
    latest: int | None
    aliases: dict[str, int]
    created_at: datetime


def now() -> datetime:
    return datetime.now(UTC)


def create_version(connection: Connection, name: str, new: NewVersion) -> ModelVersion:
    """Record a version of `name` (creating the model on first use) under the next free number.

    The number comes from an UPDATE of the model's counter, which takes a row lock on PostgreSQL and
    runs under the write lock on SQLite, so concurrent registrations get distinct consecutive numbers.
    """
    _ensure_model(connection, name, new.created_by)
    counter = (
        update(registered_models)
        .where(registered_models.c.name == name)
        .values(last_version=registered_models.c.last_version + 1)
        .returning(registered_models.c.id, registered_models.c.last_version)
    )
    model_id, number = connection.execute(counter).one()
    values = {
        "model_id": model_id,
        "version": number,
        "digest": new.manifest.digest,
        "size": new.manifest.size,
        "manifest": new.manifest.to_json().decode(),
        "flavor": new.flavor,
        "description": new.description,
        "metrics": new.metrics,
        "params": new.params,
        "tags": new.tags,
        "lineage": new.lineage,
        "profile": new.profile,
        "created_at": now(),
        "created_by": new.created_by,
    }
    connection.execute(model_versions.insert().values(**values))
    return get_version(connection, ModelRef(name, number))


def _ensure_model(connection: Connection, name: str, actor: str) -> None:
    values = {"name": name, "last_version": 0, "created_at": now(), "created_by": actor}
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(registered_models).values(**values).on_conflict_do_nothing(index_elements=["name"])
    connection.execute(statement)


def model_id(connection: Connection, name: str) -> int:
    found = connection.execute(select(registered_models.c.id).where(registered_models.c.name == name)).scalar()
    if found is None:
        raise ModelNotFound(name)
    return int(found)


def lock_model(connection: Connection, name: str) -> int:
    """The model's id, holding its row lock until the transaction ends.

    Promotions, approvals and deletions of one model take this lock first, so each reads the aliases and
    approvals that the one before it left (PostgreSQL: SELECT ... FOR UPDATE; SQLite: the write lock
    that every write transaction takes up front already serialises them).
    """
    query = select(registered_models.c.id).where(registered_models.c.name == name).with_for_update()
    found = connection.execute(query).scalar()
    if found is None:
        raise ModelNotFound(name)
    return int(found)


def get_version(connection: Connection, ref: ModelRef, *, checked: bool = True) -> ModelVersion:
    """The version `ref` names: by number, by alias, or the newest when it names neither.

    Raises DamagedVersionRecord when the stored manifest does not hash to the stored digest, unless
    `checked` is False: then the version comes back with `damaged` set (for listing, deleting it, and
    moving an alias off it).
    """
    owner = model_id(connection, ref.name)
    query = _version_query().where(model_versions.c.model_id == owner)
    if ref.version is not None:
        row = connection.execute(query.where(model_versions.c.version == ref.version)).first()
        if row is None:
            raise VersionNotFound(ref.name, ref.version)
    elif ref.alias is not None:
        target = select(model_aliases.c.version_id).where(
            model_aliases.c.model_id == owner, model_aliases.c.alias == ref.alias
        )
        row = connection.execute(query.where(model_versions.c.id == target.scalar_subquery())).first()
        if row is None:
            raise AliasNotFound(ref.name, ref.alias)
    else:
        row = connection.execute(query.order_by(model_versions.c.version.desc()).limit(1)).first()
        if row is None:
            raise ModelNotFound(ref.name)
    return _from_row(row, aliases_of_version(connection, int(row.id)), checked=checked)


def manifest_of_digest(connection: Connection, digest: str) -> Manifest:
    """The manifest that hashes to `digest`, from any version recorded with it (equal digests mean equal
    files). Raises DamagedVersionRecord when every such record was altered, UnknownDigest when there is none."""
    query = _version_query().where(model_versions.c.digest == digest).order_by(model_versions.c.id)
    rows = connection.execute(query).all()
    for row in rows:
        manifest = _manifest(row)
        if manifest is not None and manifest.digest == digest:
            return manifest
    if rows:
        _from_row(rows[0], ())  # raises DamagedVersionRecord, naming the version
    raise UnknownDigest(digest)


def list_versions(connection: Connection, name: str) -> list[ModelVersion]:
    """Every version, oldest first; a damaged record is listed with `damaged` set rather than failing all."""
    owner = model_id(connection, name)
    rows = connection.execute(
        _version_query().where(model_versions.c.model_id == owner).order_by(model_versions.c.version)
    ).all()
    return [_from_row(row, aliases_of_version(connection, int(row.id)), checked=False) for row in rows]


def list_models(connection: Connection) -> list[ModelSummary]:
    counts = (
        select(
            model_versions.c.model_id,
            func.count().label("n"),
            func.max(model_versions.c.version).label("top"),
        )
        .group_by(model_versions.c.model_id)
        .subquery()
    )
    query = (
        select(registered_models, counts.c.n, counts.c.top)
        .outerjoin(counts, counts.c.model_id == registered_models.c.id)
        .order_by(registered_models.c.name)
    )
    return [
        ModelSummary(row.name, int(row.n or 0), row.top, aliases_of_model(connection, row.id), as_utc(row.created_at))
        for row in connection.execute(query)
    ]


def aliases_of_model(connection: Connection, owner: int) -> dict[str, int]:
    query = (
        select(model_aliases.c.alias, model_versions.c.version)
        .join(model_versions, model_versions.c.id == model_aliases.c.version_id)
        .where(model_aliases.c.model_id == owner)
        .order_by(model_aliases.c.alias)
    )
    return {row.alias: int(row.version) for row in connection.execute(query)}


def aliases_of_version(connection: Connection, version_id: int) -> tuple[str, ...]:
    query = select(model_aliases.c.alias).where(model_aliases.c.version_id == version_id)
    return tuple(sorted(connection.execute(query).scalars()))


def delete_version(connection: Connection, name: str, version: int) -> ModelVersion:
    """Delete one version; refused while an alias points at it. Its blobs stay (others may share them)."""
    found = get_version(connection, ModelRef(name, version), checked=False)
    serving = _serving(connection, name, version)
    if found.aliases or serving:
        raise VersionInUse(name, version, list(found.aliases), serving)
    connection.execute(model_versions.delete().where(model_versions.c.id == found.id))
    return found


def _serving(connection: Connection, name: str, version: int) -> list[str]:
    """Deployed APIs whose current release serves this version."""
    query = (
        select(deployments.c.name)
        .join(releases, (releases.c.api == deployments.c.name) & (releases.c.version == deployments.c.version))
        .where(releases.c.model_name == name, releases.c.model_version == version)
    )
    return [row.name for row in connection.execute(query)]


def _version_query() -> Any:
    return select(model_versions, registered_models.c.name).join(
        registered_models, registered_models.c.id == model_versions.c.model_id
    )


def _from_row(row: Row[Any], aliases: tuple[str, ...], *, checked: bool = True) -> ModelVersion:
    manifest = _manifest(row)
    damage = None
    if manifest is None or manifest.digest != row.digest:
        found = manifest.digest if manifest is not None else "(an unreadable manifest)"
        damage = DamagedVersionRecord(row.name, int(row.version), row.digest, found)
        if checked:
            raise damage
    return ModelVersion(
        id=int(row.id),
        model_id=int(row.model_id),
        name=row.name,
        version=int(row.version),
        digest=row.digest,
        size=int(row.size),
        manifest=manifest if manifest is not None else Manifest(()),
        flavor=row.flavor,
        description=row.description,
        metrics=dict(row.metrics),
        params=dict(row.params),
        tags=dict(row.tags),
        lineage=dict(row.lineage),
        profile=row.profile,
        created_at=as_utc(row.created_at),
        created_by=row.created_by,
        aliases=aliases,
        damaged=damage.message if damage is not None else None,
    )


def _manifest(row: Row[Any]) -> Manifest | None:
    try:
        return Manifest.from_json(row.manifest)
    except (ValueError, TypeError):  # not JSON, or not rows of [path, sha256, size]
        return None


def as_utc(moment: datetime) -> datetime:
    """SQLite hands datetimes back without their zone; every stored time is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
