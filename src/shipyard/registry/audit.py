"""The audit log: every registration, approval, deletion and promotion attempt, allowed or refused."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, select

from shipyard.registry.versions import as_utc, now
from shipyard.store.tables import audit_log

CLAIMED_USER = "claimed_user"


def claimed(actor: str, on_behalf_of: str | None) -> dict[str, Any]:
    """The details key that records a claimed name, when one was given and differs from the actor."""
    return {CLAIMED_USER: on_behalf_of} if on_behalf_of and on_behalf_of != actor else {}


class Action(StrEnum):
    REGISTER = "register"  #: a version was recorded
    PROMOTE = "promote"  #: an alias moved (dry runs are not logged)
    PROMOTE_REFUSED = "promote_refused"  #: the policy refused to move an alias
    APPROVE = "approve"  #: someone approved a version for an alias
    DELETE = "delete"  #: a version was deleted


@dataclass(frozen=True)
class AuditEntry:
    action: Action
    model: str
    actor: str
    version: int | None = None
    alias: str | None = None
    from_version: int | None = None
    allowed: bool | None = None
    forced: bool = False
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    at: datetime | None = None
    id: int | None = None

    @property
    def claimed_user(self) -> str | None:
        """The name given with --user: whom the actor (an OS account) said they acted for."""
        claimed = self.details.get(CLAIMED_USER)
        return str(claimed) if claimed else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat() if self.at else None,
            "action": str(self.action),
            "model": self.model,
            "actor": self.actor,
            "version": self.version,
            "alias": self.alias,
            "from_version": self.from_version,
            "allowed": self.allowed,
            "forced": self.forced,
            "reason": self.reason,
            "details": self.details,
        }


def record(connection: Connection, entry: AuditEntry) -> None:
    values = entry.to_dict() | {"at": now(), "action": str(entry.action)}
    del values["id"]
    connection.execute(audit_log.insert().values(**values))


def history(connection: Connection, model: str) -> list[AuditEntry]:
    """The model's audit entries, oldest first (they outlive deleted versions)."""
    query = select(audit_log).where(audit_log.c.model == model).order_by(audit_log.c.id)
    return [
        AuditEntry(
            action=Action(row.action),
            model=row.model,
            actor=row.actor,
            version=row.version,
            alias=row.alias,
            from_version=row.from_version,
            allowed=row.allowed,
            forced=row.forced,
            reason=row.reason,
            details=dict(row.details),
            at=as_utc(row.at),
            id=int(row.id),
        )
        for row in connection.execute(query)
    ]
