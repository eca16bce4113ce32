"""Pydantic models of policies.yaml: the rules and approvals each alias requires before a promotion.

```yaml
aliases:
  production:
    require:
      - candidate.metrics.accuracy >= 0.90
    approvals: 1
default: deny          # aliases not listed above: allow (the default), deny, or a policy of their own
```

Loading checks the structure (alias keys follow the alias grammar) and records where each rule sits in
the file, so that a bad expression can be reported with its line and column.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from shipyard.errors import ConfigError, ShipyardError
from shipyard.registry.refs import check_alias

DEFAULT_SECTION = "(default)"
"""The key of the `default:` section's rules in LoadedPolicies.lines (no alias can be spelled so)."""


class AliasPolicy(BaseModel):
    """What promoting a version to one alias requires."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    require: list[str] = Field(default_factory=list)
    """CEL expressions over `candidate`, `current` and `evidence`; every one must be true."""
    approvals: int = Field(0, ge=0, le=100)
    """Approvals needed, each from someone other than the person who registered the version."""


def _alias_name(alias: str) -> str:
    try:
        return check_alias(alias)
    except ShipyardError as exc:
        raise ValueError(exc.message) from None


AliasName = Annotated[str, AfterValidator(_alias_name)]


class PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    aliases: dict[AliasName, AliasPolicy] = Field(default_factory=dict)
    """Policy per alias name."""
    default: AliasPolicy | Literal["allow", "deny"] = "allow"
    """What governs an alias that `aliases` does not list: allow (no rules), deny, or a policy."""


@dataclass(frozen=True)
class LoadedPolicies:
    policies: PolicyFile
    source: str
    """The file name to show in messages."""
    lines: dict[tuple[str, int], int] = field(default_factory=dict)
    """1-based line of each rule, keyed by (alias, index in `require`); DEFAULT_SECTION for `default`."""
    columns: dict[tuple[str, int], int] = field(default_factory=dict)
    """1-based column in the file where each single-line rule's expression starts."""
    digest: str = ""
    """sha256 of the file's bytes: which exact policy a promotion was judged by."""


def load_policies(path: str | os.PathLike[str]) -> LoadedPolicies:
    """Read and validate policies.yaml; raises ConfigError with one line per problem."""
    source = Path(path)
    shown = str(path)
    try:
        raw = source.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{shown}: cannot read the policy file: {exc}"]) from None
    node, data = _parse(text, shown)
    try:
        policies = PolicyFile.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise ConfigError([_problem(error, shown) for error in exc.errors(include_url=False)]) from None
    lines, columns = _rule_positions(node, text.splitlines())
    return LoadedPolicies(policies, shown, lines, columns, "sha256:" + hashlib.sha256(raw).hexdigest())


def _parse(text: str, shown: str) -> tuple[yaml.Node | None, Any]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise ConfigError([f"{shown}{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}"]) from None
    return node, data


def _problem(error: Any, shown: str) -> str:
    where = ".".join(str(part) for part in error["loc"] if part != "[key]") or "(top level)"
    if error["loc"][-1:] == ("[key]",):
        return f"{shown}: {where}: {error['msg'].removeprefix('Value error, ')}"
    if error["type"] == "extra_forbidden":
        return (
            f"{shown}: {where}: unknown key; allowed keys: aliases, default, and per alias (or in default) "
            "require, approvals"
        )
    if error["loc"][:1] == ("default",):
        return f"{shown}: default: must be allow, deny, or a policy with require/approvals, got {error.get('input')!r}"
    return f"{shown}: {where}: {error['msg'].removeprefix('Value error, ')}, got {error.get('input')!r}"


def _rule_positions(
    node: yaml.Node | None, source: list[str]
) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
    lines: dict[tuple[str, int], int] = {}
    columns: dict[tuple[str, int], int] = {}
    sections = [(str(key.value), value) for key, value in _pairs(_child(node, "aliases"))]
    for alias, section in [*sections, (DEFAULT_SECTION, _child(node, "default"))]:
        rules = _child(section, "require")
        if not isinstance(rules, yaml.SequenceNode):
            continue
        for index, rule in enumerate(rules.value):
            lines[(alias, index)] = rule.start_mark.line + 1
            column = _expression_column(rule, source)
            if column is not None:
                columns[(alias, index)] = column
    return lines, columns


def _expression_column(rule: yaml.Node, source: list[str]) -> int | None:
    """Where the expression starts in its line, when the file spells it there verbatim (plain or quoted)."""
    if not isinstance(rule, yaml.ScalarNode) or rule.start_mark.line >= len(source):
        return None
    start = rule.start_mark.column + (1 if rule.style in ("'", '"') else 0)
    line = source[rule.start_mark.line]
    return start + 1 if line[start : start + len(rule.value)] == rule.value else None


def _pairs(node: yaml.Node | None) -> list[tuple[yaml.Node, yaml.Node]]:
    return list(node.value) if isinstance(node, yaml.MappingNode) else []


def _child(node: yaml.Node | None, name: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    return next((value for key, value in node.value if key.value == name), None)
