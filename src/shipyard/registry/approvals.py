"""Approvals: a person other than the registrant vouches for a version before it takes an alias.

People are the OS accounts recorded (see identity.py): the registrant's account cannot approve, and each
account approves a version for an alias once.
"""

from __future__ import annotations

from sqlalchemy import Connection, select

from shipyard.registry.errors import AlreadyApproved, SelfApproval
from shipyard.registry.identity import same_person
from shipyard.registry.versions import ModelVersion, now
from shipyard.store.tables import approvals


def approve(connection: Connection, version: ModelVersion, alias: str, approver: str, comment: str = "") -> None:
    if same_person(approver, version.created_by):
        raise SelfApproval(version.name, version.version, approver)
    if any(same_person(approver, earlier) for earlier in _approved_by(connection, version, alias)):
        raise AlreadyApproved(version.name, version.version, alias, approver)
    connection.execute(
        approvals.insert().values(
            version_id=version.id, alias=alias, approved_by=approver, comment=comment, created_at=now()
        )
    )


def approvers(connection: Connection, version: ModelVersion, alias: str) -> tuple[str, ...]:
    """Who approved `version` for `alias`, oldest first; never the registrant, each account once."""
    found: list[str] = []
    for name in _approved_by(connection, version, alias):
        if not same_person(name, version.created_by) and not any(same_person(name, seen) for seen in found):
            found.append(name)
    return tuple(found)


def _approved_by(connection: Connection, version: ModelVersion, alias: str) -> list[str]:
    query = (
        select(approvals.c.approved_by)
        .where(approvals.c.version_id == version.id, approvals.c.alias == alias)
        .order_by(approvals.c.id)
    )
    return list(connection.execute(query).scalars())
