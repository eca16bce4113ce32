"""Promotion rules in CEL, evaluated as a pure function: (candidate, current, evidence) -> Verdict.

`candidate` is the version being promoted, `current` the version that holds the alias now (absent on
the first promotion, so `!has(current) || ...` guards a comparison) and `evidence` what was recorded
about the candidate (`evidence.approvals`, `evidence.approvers`). A rule over a field that is not there
fails and names the field; it never raises.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import celpy
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError
from lark.exceptions import UnexpectedToken

from shipyard.errors import ConfigError
from shipyard.spec.policies import LoadedPolicies, load_policies

MISSING = "(missing)"
_ROOTS = ("candidate", "current", "evidence")
_REFERENCE = re.compile(r"\b(candidate|current|evidence)((?:\.[A-Za-z_][A-Za-z0-9_]*)*)")
_STRING = re.compile(r"'''.*?'''|\"\"\".*?\"\"\"|'(?:\\.|[^'\\])*'|\"(?:\\.|[^\"\\])*\"", re.DOTALL)
_ABSENT = object()


@dataclass(frozen=True)
class Rule:
    expression: str
    program: Any = field(repr=False, compare=False)


@dataclass(frozen=True)
class AliasRules:
    alias: str
    rules: tuple[Rule, ...] = ()
    approvals: int = 0


@dataclass(frozen=True)
class Policies:
    aliases: Mapping[str, AliasRules] = field(default_factory=dict)
    source: str | None = None

    def for_alias(self, alias: str) -> AliasRules:
        """The rules of `alias`; an alias the policy file does not list has none."""
        return self.aliases.get(alias, AliasRules(alias))


@dataclass(frozen=True)
class RuleResult:
    expression: str
    passed: bool
    values: dict[str, Any]
    """Each field the rule reads, with its value or MISSING."""
    error: str | None = None
    """Why the rule could not be evaluated (a missing field, a type mismatch)."""

    def describe(self) -> str:
        shown = ", ".join(f"{name}={_show(value)}" for name, value in self.values.items())
        outcome = "passed" if self.passed else f"failed{f' ({self.error})' if self.error else ''}"
        return f"{self.expression} {outcome}{f' [{shown}]' if shown else ''}"


@dataclass(frozen=True)
class Verdict:
    alias: str
    rules: tuple[RuleResult, ...]
    approvals_required: int
    approvers: tuple[str, ...]

    @property
    def has_approvals(self) -> bool:
        return len(self.approvers) >= self.approvals_required

    @property
    def allowed(self) -> bool:
        return self.has_approvals and all(rule.passed for rule in self.rules)

    def failures(self) -> list[str]:
        found = [rule.describe() for rule in self.rules if not rule.passed]
        if not self.has_approvals:
            found.append(f"needs {self.approvals_required} approval(s), has {len(self.approvers)}")
        return found

    def to_dict(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "allowed": self.allowed,
            "rules": [
                {"expression": r.expression, "passed": r.passed, "values": r.values, "error": r.error}
                for r in self.rules
            ],
            "approvals": {"required": self.approvals_required, "approvers": list(self.approvers)},
        }


def load_policies_file(path: str | os.PathLike[str]) -> Policies:
    """Load policies.yaml and compile every rule; raises ConfigError naming each bad rule's position."""
    return compile_policies(load_policies(path))


def compile_policies(loaded: LoadedPolicies) -> Policies:
    problems: list[str] = []
    aliases: dict[str, AliasRules] = {}
    for alias, policy in loaded.policies.aliases.items():
        rules = []
        for index, expression in enumerate(policy.require):
            try:
                rules.append(compile_rule(expression))
            except ValueError as exc:
                line = loaded.lines.get((alias, index))
                where = f"{loaded.source}:{line}" if line else loaded.source
                problems.append(f"{where}: aliases.{alias}.require.{index}: {exc}")
        aliases[alias] = AliasRules(alias, tuple(rules), policy.approvals)
    if problems:
        raise ConfigError(problems)
    return Policies(aliases, loaded.source)


@functools.cache
def _environment() -> celpy.Environment:
    """The CEL environment, built on first use: building its parser takes a tenth of a second."""
    return celpy.Environment()


def compile_rule(expression: str) -> Rule:
    """A compiled rule; raises ValueError giving the column where `expression` stops parsing."""
    try:
        ast = _environment().compile(expression)
    except CELParseError as exc:
        raise ValueError(_parse_problem(expression, exc)) from None
    return Rule(expression, _environment().program(ast))


def _parse_problem(expression: str, error: CELParseError) -> str:
    cause = error.__context__  # celpy raises its error while handling lark's, which says what was found
    column = int(getattr(error, "column", 0) or 0)
    if isinstance(cause, UnexpectedToken) and cause.token.type == "$END":
        found = "the expression ends too early"
    elif isinstance(cause, UnexpectedToken):
        found = f"unexpected {str(cause.token)!r}"
    else:
        found = f"unexpected {expression[max(column - 1, 0) :][:1]!r}"
    return f"CEL expression {expression!r} does not parse at column {column}: {found}"


def evaluate(
    rules: AliasRules,
    candidate: Mapping[str, Any],
    current: Mapping[str, Any] | None,
    evidence: Mapping[str, Any],
) -> Verdict:
    data: dict[str, Any] = {"candidate": dict(candidate), "evidence": dict(evidence)}
    if current is not None:
        data["current"] = dict(current)
    activation = {name: json_to_cel(value) for name, value in data.items()}
    results = tuple(_evaluate_rule(rule, activation, data) for rule in rules.rules)
    approvers = tuple(evidence.get("approvers", ()))
    return Verdict(rules.alias, results, rules.approvals, approvers)


def _evaluate_rule(rule: Rule, activation: dict[str, Any], data: dict[str, Any]) -> RuleResult:
    found = {path: lookup(data, path) for path in references(rule.expression)}
    values = {path: _summary(value) for path, value in found.items()}
    missing = [path for path, value in found.items() if value is _ABSENT]
    try:
        outcome = rule.program.evaluate(activation)
    except CELEvalError as exc:
        outcome = exc
    if isinstance(outcome, CELEvalError):
        reason = f"field {missing[0]} is missing" if missing else f"cannot be evaluated: {_detail(outcome)}"
        return RuleResult(rule.expression, False, values, reason)
    if isinstance(outcome, celpy.celtypes.BoolType):  # celpy's booleans subclass int, not bool
        return RuleResult(rule.expression, bool(outcome), values)
    return RuleResult(rule.expression, False, values, f"must give true or false, gave {_show(_plain(outcome))}")


def _summary(value: Any) -> Any:
    """A value as the verdict records it: scalars whole, containers by their size (audit rows stay small)."""
    if value is _ABSENT:
        return MISSING
    if isinstance(value, Mapping):
        return f"{{{len(value)} fields}}"
    if isinstance(value, list | tuple):
        return f"[{len(value)} items]"
    return value


def _plain(value: Any) -> Any:
    """A CEL value as the Python value it wraps, for messages."""
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value


def _detail(exc: CELEvalError) -> str:
    return str(exc.args[0]) if exc.args else type(exc).__name__


def references(expression: str) -> list[str]:
    """The dotted field paths under candidate/current/evidence that `expression` reads, in order."""
    code = _STRING.sub("''", expression)
    found = [match.group(1) + match.group(2) for match in _REFERENCE.finditer(code)]
    return list(dict.fromkeys(found))


def lookup(data: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path, or the `_ABSENT` sentinel at the first step that is not there."""
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _ABSENT
        value = value[part]
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
