"""Governance: promotion rules as pure functions of (candidate, current, evidence)."""

from shipyard.governance.policy import (
    AliasRules,
    Policies,
    RuleResult,
    Verdict,
    compile_policies,
    evaluate,
    load_policies_file,
)

__all__ = [
    "AliasRules",
    "Policies",
    "RuleResult",
    "Verdict",
    "compile_policies",
    "evaluate",
    "load_policies_file",
]
