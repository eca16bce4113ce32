"""Aliases (`staging`, `production`, ...): a movable name for one version of a model."""

from __future__ import annotations

from sqlalchemy import Connection, select

from shipyard.registry.errors import AliasNotFound
from shipyard.registry.refs import ModelRef
from shipyard.registry.versions import ModelVersion, get_version, now
from shipyard.store.tables import model_aliases


def holder(connection: Connection, name: str, alias: str) -> ModelVersion | None:
    """The version `alias` points at, or None when it points nowhere yet. Its record is read without the
    integrity check (`damaged` says when it failed), so an alias can always be moved off a damaged one."""
    try:
        return get_version(connection, ModelRef(name, alias=alias), checked=False)
    except AliasNotFound:
        return None


def set_alias(connection: Connection, target: ModelVersion, alias: str, actor: str) -> None:
    """Point `alias` of the target's model at `target`, creating the alias when it is new."""
    key = (model_aliases.c.model_id == target.model_id) & (model_aliases.c.alias == alias)
    values = {"version_id": target.id, "updated_at": now(), "updated_by": actor}
    if connection.execute(select(model_aliases.c.alias).where(key)).first() is None:
        connection.execute(model_aliases.insert().values(model_id=target.model_id, alias=alias, **values))
    else:
        connection.execute(model_aliases.update().where(key).values(**values))
