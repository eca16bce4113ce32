"""Promotion rules in CEL, evaluated as a pure function: (candidate, current, evidence) -> Verdict.

`candidate` is the version being promoted, `current` the version that holds the alias now (absent on
the first promotion, so `!has(current) || ...` guards a comparison) and `evidence` what was recorded
about the candidate (`evidence.approvals`, `evidence.approvers`). A rule that names any other variable,
or a function CEL lacks, is refused when the file loads. A rule over a field that is not there fails
and names the field; it never raises.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import celpy
import orjson
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError
from lark.exceptions import UnexpectedToken

from shipyard.errors import ConfigError
from shipyard.governance.expression import FieldPath, field_paths, unknown_names
from shipyard.governance.verdict import MISSING, RuleResult, Verdict, show
from shipyard.spec.policies import DEFAULT_SECTION, AliasPolicy, LoadedPolicies, load_policies

MAX_VALUE_BYTES = 512
"""A value a rule read is recorded whole up to this size as JSON, bigger ones by their size."""
MAX_ERROR_LENGTH = 240
_ABSENT = object()


class RuleError(ValueError):
    """A rule that cannot be compiled; `line` and `column` say where in the expression (1-based), when known."""

    def __init__(self, message: str, column: int | None = None, line: int = 1) -> None:
        super().__init__(message)
        self.column = column
        self.line = line


@dataclass(frozen=True)
class Rule:
    expression: str
    program: Any = field(repr=False, compare=False)
    paths: tuple[FieldPath, ...] = ()
    """The fields the rule reads, for the verdict and to name a missing one."""


@dataclass(frozen=True)
class AliasRules:
    alias: str
    rules: tuple[Rule, ...] = ()
    approvals: int = 0
    policy: str = ""
    """Which policy this is, in words (empty: none governs the alias)."""
    denial: str | None = None
    """Set when the alias may not be moved at all."""


@dataclass(frozen=True)
class Policies:
    aliases: Mapping[str, AliasRules] = field(default_factory=dict)
    source: str | None = None
    digest: str | None = None
    """sha256 of the policy file, recorded with every promotion it judged."""
    default: AliasRules | None = None
    """Rules for aliases that `aliases` does not list (None: `allow` or `deny`, see `deny_unlisted`)."""
    deny_unlisted: bool = False
    path: str | None = None
    """The policy file's absolute path, recorded with every promotion it judged."""

    def for_alias(self, alias: str) -> AliasRules:
        """The rules that govern `alias`: its own, the default policy's, a denial, or none at all."""
        if alias in self.aliases:
            return self.aliases[alias]
        where = self.source or "SHIPYARD_HOME/policies.yaml"
        close = [name for name in self.aliases if _is_near(alias, name)]
        if close:
            return AliasRules(
                alias,
                policy=f"none: {where} does not list alias {alias!r}",
                denial=f"{where} lists alias {close[0]!r} but not {alias!r}, which looks like a typo; fix the key, "
                f"or add `{alias}: {{}}` under aliases to allow {alias!r} without rules",
            )
        if self.deny_unlisted:
            return AliasRules(
                alias,
                policy=f"default of {where}: deny",
                denial=f"{where} does not list alias {alias!r} and denies unlisted aliases (default: deny); "
                f"add aliases.{alias} to it",
            )
        if self.default is not None:
            return AliasRules(
                alias, self.default.rules, self.default.approvals, f"default of {where} ({alias!r} is not listed)"
            )
        found = f"in {self.source}" if self.source else "(no policy file)"
        return AliasRules(alias, policy=f"no policy for alias {alias!r} {found}: allowed by default")


def load_policies_file(path: str | os.PathLike[str]) -> Policies:
    """Load policies.yaml and compile every rule; raises ConfigError naming each bad rule's position."""
    return compile_policies(load_policies(path))


def compile_policies(loaded: LoadedPolicies) -> Policies:
    problems: list[str] = []
    aliases = {
        alias: _compile_section(loaded, alias, f"aliases.{alias}", policy, problems)
        for alias, policy in loaded.policies.aliases.items()
    }
    declared = loaded.policies.default
    default = None
    if isinstance(declared, AliasPolicy):
        default = _compile_section(loaded, DEFAULT_SECTION, "default", declared, problems)
    if problems:
        raise ConfigError(problems)
    return Policies(
        aliases, loaded.source, loaded.digest or None, default, declared == "deny", path=loaded.path or loaded.source
    )


def _compile_section(
    loaded: LoadedPolicies, alias: str, key: str, policy: AliasPolicy, problems: list[str]
) -> AliasRules:
    rules = []
    for index, expression in enumerate(policy.require):
        try:
            rules.append(compile_rule(expression))
        except RuleError as exc:
            problems.append(f"{loaded.position(alias, index, exc.line, exc.column)}: {key}.require.{index}: {exc}")
    return AliasRules(alias, tuple(rules), policy.approvals, f"{key} of {loaded.source}")


@functools.cache
def _environment() -> celpy.Environment:
    """The CEL environment, built on first use: building its parser takes a tenth of a second."""
    return celpy.Environment()


def compile_rule(expression: str) -> Rule:
    """A compiled rule; raises RuleError giving the column where `expression` stops parsing, or the first
    name in it that is neither candidate, current nor evidence (nor a macro's variable) nor a CEL function."""
    try:
        ast = _environment().compile(expression)
    except CELParseError as exc:
        column = int(getattr(exc, "column", 0) or 0)
        line = int(getattr(exc, "line", 1) or 1)
        raise RuleError(_parse_problem(expression, exc, line, column), column or None, line) from None
    unknown = unknown_names(ast)
    if unknown:
        first = unknown[0]
        raise RuleError(f"CEL expression {expression!r} uses an {first.describe()}", first.column, first.line)
    return Rule(expression, _environment().program(ast), tuple(field_paths(ast)))


def _parse_problem(expression: str, error: CELParseError, line: int, column: int) -> str:
    cause = error.__context__  # celpy raises its error while handling lark's, which says what was found
    if isinstance(cause, UnexpectedToken) and cause.token.type == "$END":
        found = "the expression ends too early"
    elif isinstance(cause, UnexpectedToken):
        found = f"unexpected {str(cause.token)!r}"
    else:
        text = (expression.split("\n")[line - 1 : line] or [""])[0]
        found = f"unexpected {text[max(column - 1, 0) :][:1]!r}"
    where = f"line {line} column {column}" if line > 1 else f"column {column}"
    return f"CEL expression {expression!r} does not parse at {where}: {found}"


def references(expression: str) -> list[str]:
    """The field paths under candidate/current/evidence that `expression` reads, in order."""
    return [str(path) for path in compile_rule(expression).paths]


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
    return Verdict(rules.alias, results, rules.approvals, approvers, rules.policy, rules.denial)


def _evaluate_rule(rule: Rule, activation: dict[str, Any], data: dict[str, Any]) -> RuleResult:
    found = {str(path): lookup(data, path) for path in rule.paths}
    values = {path: recorded(value) for path, value in found.items()}
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
    return RuleResult(rule.expression, False, values, f"must give true or false, gave {show(_plain(outcome))}")


def recorded(value: Any) -> Any:
    """A value as the verdict (and the audit log) keeps it: whole when small, else its size."""
    if value is _ABSENT:
        return MISSING
    try:
        if len(orjson.dumps(value)) <= MAX_VALUE_BYTES:
            return value
    except TypeError:
        return show(value)
    if isinstance(value, Mapping):
        return f"{{{len(value)} fields}}"
    if isinstance(value, list | tuple):
        return f"[{len(value)} items]"
    return show(value, MAX_VALUE_BYTES // 2)


def _plain(value: Any) -> Any:
    """A CEL value as the Python value it wraps, for messages."""
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value


_CEL_TYPE = re.compile(r"<class 'celpy\.celtypes\.(\w+?)(?:Type)?'>")
_RULE_TOKEN = re.compile(r"Token\('RULE', '(\w+)'\)")
_OPERATORS = {"relation_lt": "<", "relation_le": "<=", "relation_gt": ">", "relation_ge": ">=", "relation_eq": "==",
              "relation_ne": "!=", "relation_in": "in", "addition_add": "+", "addition_sub": "-",
              "multiplication_mul": "*", "multiplication_div": "/", "multiplication_mod": "%"}  # fmt: skip


def _detail(exc: CELEvalError) -> str:
    """celpy's message, short and readable: no dump of the activation, CEL's names for types and operators."""
    message = str(exc.args[0]) if exc.args else type(exc).__name__
    extra = exc.args[2] if len(exc.args) > 2 else None
    if isinstance(extra, tuple) and len(extra) == 1 and not message.startswith("found no matching overload"):
        message += f": {_plain(extra[0])!r}" if not isinstance(extra[0], str) else f": {extra[0]}"
    message = re.sub(r"\s*\(in activation .*", "", message, flags=re.DOTALL)
    message = _RULE_TOKEN.sub(lambda m: repr(_OPERATORS.get(m[1], m[1])), message)
    message = _CEL_TYPE.sub(lambda m: m[1].lower(), message)
    message = " ".join(message.split())
    return message if len(message) <= MAX_ERROR_LENGTH else message[: MAX_ERROR_LENGTH - 3] + "..."


def lookup(data: Any, path: FieldPath | str) -> Any:
    """The value at a path, or the `_ABSENT` sentinel at the first step that is not there."""
    parts = path.parts if isinstance(path, FieldPath) else tuple(path.split("."))
    value: Any = data
    for part in parts:
        value = _step(value, part)
        if value is _ABSENT:
            break
    return value


def _step(value: Any, part: str | int) -> Any:
    if isinstance(part, int):
        return value[part] if isinstance(value, list | tuple) and -len(value) <= part < len(value) else _ABSENT
    return value[part] if isinstance(value, Mapping) and part in value else _ABSENT


def _is_near(alias: str, listed: str) -> bool:
    """Whether `listed` is one small edit from `alias` (a likely typo of it)."""
    return 0 < _edit_distance(alias, listed) <= (1 if len(alias) <= 5 else 2)


def _edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, left in enumerate(a, start=1):
        current = [i]
        for j, right in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (left != right)))
        previous = current
    return previous[-1]
