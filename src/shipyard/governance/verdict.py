"""What a policy decided about one promotion: each rule's result and values, approvals, what governed it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MISSING = "(missing)"


@dataclass(frozen=True)
class RuleResult:
    expression: str
    passed: bool
    values: dict[str, Any]
    """Each field the rule reads, with its value (small values whole, big ones by their size) or MISSING."""
    error: str | None = None
    """Why the rule could not be evaluated (a missing field, a type mismatch)."""

    def describe(self) -> str:
        shown = ", ".join(f"{name}={show(value)}" for name, value in self.values.items())
        outcome = "passed" if self.passed else f"failed{f' ({self.error})' if self.error else ''}"
        return f"{self.expression} {outcome}{f' [{shown}]' if shown else ''}"


@dataclass(frozen=True)
class Verdict:
    alias: str
    rules: tuple[RuleResult, ...]
    approvals_required: int
    approvers: tuple[str, ...]
    policy: str = ""
    """Which policy governed the alias, in words: `aliases.production of policies.yaml`, or that none did."""
    denial: str | None = None
    """Why the alias may not be moved at all (the policy file denies unlisted aliases, or a likely typo)."""

    @property
    def has_approvals(self) -> bool:
        return len(self.approvers) >= self.approvals_required

    @property
    def allowed(self) -> bool:
        return self.denial is None and self.has_approvals and all(rule.passed for rule in self.rules)

    def failures(self) -> list[str]:
        found = [self.denial] if self.denial else []
        found += [rule.describe() for rule in self.rules if not rule.passed]
        if not self.has_approvals:
            found.append(f"needs {self.approvals_required} approval(s), has {len(self.approvers)}")
        return found

    def to_dict(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "allowed": self.allowed,
            "policy": self.policy,
            "denied": self.denial,
            "rules": [
                {"expression": r.expression, "passed": r.passed, "values": r.values, "error": r.error}
                for r in self.rules
            ],
            "approvals": {"required": self.approvals_required, "approvers": list(self.approvers)},
        }


def show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
