"""Promotion: move an alias to a version once the governance policy allows it, and log every attempt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from shipyard.governance import Policies, Verdict, evaluate
from shipyard.registry.aliases import holder, set_alias
from shipyard.registry.approvals import approvers
from shipyard.registry.audit import Action, AuditEntry, claimed, record
from shipyard.registry.errors import CandidateDamaged, ForceWithoutReason, PromotionRefused
from shipyard.registry.refs import ModelRef, check_alias
from shipyard.registry.versions import ModelVersion, get_version, lock_model


@dataclass(frozen=True)
class PromotionOutcome:
    name: str
    version: int
    alias: str
    from_version: int | None
    verdict: Verdict
    forced: bool
    dry_run: bool
    damaged: str | None = None
    """Why the candidate's stored files failed verification: such a version is never promoted, forced or not."""
    current_damaged: str | None = None
    """Why the record of the version holding the alias now is damaged; moving the alias off it is allowed."""

    @property
    def applied(self) -> bool:
        """Whether the alias moved (never for a dry run)."""
        return not self.dry_run and self.damaged is None and (self.verdict.allowed or self.forced)

    def raise_for_refusal(self) -> PromotionOutcome:
        if self.damaged is not None and not self.dry_run:
            raise CandidateDamaged(self.name, self.version, self.alias, self.damaged)
        if not self.dry_run and not self.applied:
            raise PromotionRefused(self.name, self.version, self.alias, self.verdict.failures())
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "from_version": self.from_version,
            "allowed": self.verdict.allowed,
            "forced": self.forced,
            "dry_run": self.dry_run,
            "applied": self.applied,
            "damaged": self.damaged,
            "current_damaged": self.current_damaged,
            "verdict": self.verdict.to_dict(),
        }


@dataclass(frozen=True)
class PromotionRequest:
    ref: ModelRef
    alias: str
    actor: str
    """The identity acting (an OS account, see identity.py)."""
    reason: str = ""
    dry_run: bool = False
    force: bool = False
    on_behalf_of: str | None = None
    """A name the actor gave with --user, recorded beside the actor."""
    damaged: str | None = None
    """What verifying the candidate's files found wrong (the caller verifies before the transaction)."""


def promote(connection: Connection, policies: Policies, request: PromotionRequest) -> PromotionOutcome:
    """Evaluate the alias's policy for the candidate and, unless this is a dry run, log the attempt and
    move the alias when the policy allows it (or when forced, with a reason)."""
    check_alias(request.alias)
    if request.force and not request.reason.strip():
        raise ForceWithoutReason()
    lock_model(connection, request.ref.name)
    candidate = get_version(connection, request.ref)
    current = holder(connection, candidate.name, request.alias)
    evidence = _evidence(approvers(connection, candidate, request.alias))
    verdict = evaluate(
        policies.for_alias(request.alias),
        policy_view(candidate),
        policy_view(current) if current is not None else None,
        evidence,
    )
    outcome = PromotionOutcome(
        candidate.name,
        candidate.version,
        request.alias,
        current.version if current else None,
        verdict,
        request.force and not verdict.allowed,
        request.dry_run,
        request.damaged,
        current.damaged if current else None,
    )
    if not request.dry_run:
        _log(connection, outcome, request, _policy_record(policies, candidate))
        if outcome.applied:
            set_alias(connection, candidate, request.alias, request.actor)
    return outcome


def _evidence(names: tuple[str, ...]) -> dict[str, Any]:
    return {"approvals": len(names), "approvers": list(names)}


def policy_view(version: ModelVersion) -> dict[str, Any]:
    """What a rule sees of a version as `candidate` or `current`."""
    return {
        "name": version.name,
        "version": version.version,
        "digest": version.digest,
        "size": version.size,
        "flavor": version.flavor or "",
        "description": version.description,
        "metrics": version.metrics,
        "params": version.params,
        "tags": version.tags,
        "lineage": version.lineage,
        "created_by": version.created_by,
        "created_at": version.created_at.isoformat(),
        "aliases": list(version.aliases),
    }


def _policy_record(policies: Policies, candidate: ModelVersion) -> dict[str, Any]:
    """Which policy file judged the attempt (path and digest, so a later edit of it is visible), and what."""
    return {
        "policy_file": {"path": policies.path or policies.source, "digest": policies.digest}
        if policies.source
        else None,
        "candidate_digest": candidate.digest,
    }


def _log(connection: Connection, outcome: PromotionOutcome, request: PromotionRequest, extra: dict[str, Any]) -> None:
    action = Action.PROMOTE if outcome.applied else Action.PROMOTE_REFUSED
    verdict = outcome.verdict.to_dict()
    record(
        connection,
        AuditEntry(
            action=action,
            model=outcome.name,
            actor=request.actor,
            version=outcome.version,
            alias=outcome.alias,
            from_version=outcome.from_version,
            allowed=outcome.verdict.allowed,
            forced=outcome.forced,
            reason=request.reason,
            details={
                "policy": verdict["policy"],
                "denied": verdict["denied"],
                "damaged": outcome.damaged,
                **({"current_damaged": outcome.current_damaged} if outcome.current_damaged else {}),
                "rules": verdict["rules"],
                "approvals": verdict["approvals"],
                **extra,
                **claimed(request.actor, request.on_behalf_of),
            },
        ),
    )
