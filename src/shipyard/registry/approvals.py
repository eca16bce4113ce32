"""Approvals: a person other than the registrant vouches for a version before it takes an alias."""

from __future__ import annotations

from sqlalchemy import Connection, select

from shipyard.registry.errors import AlreadyApproved, SelfApproval
from shipyard.registry.versions import ModelVersion, now
from shipyard.store.tables import approvals


def approve(connection: Connection, version: ModelVersion, alias: str, approver: str, comment: str = "") -> None:
    if approver == version.created_by:
        raise SelfApproval(version.name, version.version, approver)
    if approver in approvers(connection, version, alias):
        raise AlreadyApproved(version.name, version.version, alias, approver)
    connection.execute(
        approvals.insert().values(
            version_id=version.id, alias=alias, approved_by=approver, comment=comment, created_at=now()
        )
    )


def approvers(connection: Connection, version: ModelVersion, alias: str) -> tuple[str, ...]:
    """Who approved `version` for `alias`, oldest first; never the registrant."""
    query = (
        select(approvals.c.approved_by)
        .where(approvals.c.version_id == version.id, approvals.c.alias == alias)
        .where(approvals.c.approved_by != version.created_by)
        .order_by(approvals.c.id)
    )
    return tuple(connection.execute(query).scalars())
