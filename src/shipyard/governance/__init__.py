"""Governance: promotion rules as pure functions of (candidate, current, evidence)."""

from shipyard.governance.policy import (
    AliasRules,
    Policies,
    compile_policies,
    evaluate,
    load_policies_file,
)
from shipyard.governance.verdict import RuleResult, Verdict

__all__ = [
    "AliasRules",
    "Policies",
    "RuleResult",
    "Verdict",
    "compile_policies",
    "evaluate",
    "load_policies_file",
]
