"""Pydantic models of policies.yaml: the rules and approvals each alias requires before a promotion.

```yaml
aliases:
  production:
    require:
      - candidate.metrics.accuracy >= 0.90
    approvals: 1
```

Loading checks the structure and records where each rule sits in the file, so that an expression that
does not parse can be reported with its line and column.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shipyard.errors import ConfigError


class AliasPolicy(BaseModel):
    """What promoting a version to one alias requires."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    require: list[str] = Field(default_factory=list)
    """CEL expressions over `candidate`, `current` and `evidence`; every one must be true."""
    approvals: int = Field(0, ge=0, le=100)
    """Approvals needed, each from someone other than the person who registered the version."""


class PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    aliases: dict[str, AliasPolicy] = Field(default_factory=dict)
    """Policy per alias name; an alias that is not listed has no rules."""


@dataclass(frozen=True)
class LoadedPolicies:
    policies: PolicyFile
    source: str
    """The file name to show in messages."""
    lines: dict[tuple[str, int], int] = field(default_factory=dict)
    """1-based line of each rule, keyed by (alias, index in `require`)."""


def load_policies(path: str | os.PathLike[str]) -> LoadedPolicies:
    """Read and validate policies.yaml; raises ConfigError with one line per problem."""
    source = Path(path)
    shown = str(path)
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{shown}: cannot read the policy file: {exc}"]) from None
    node, data = _parse(text, shown)
    try:
        policies = PolicyFile.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise ConfigError([_problem(error, shown) for error in exc.errors(include_url=False)]) from None
    return LoadedPolicies(policies, shown, _rule_lines(node))


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
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{shown}: {where}: unknown key; allowed keys: aliases, and per alias require, approvals"
    return f"{shown}: {where}: {error['msg']}, got {error.get('input')!r}"


def _rule_lines(node: yaml.Node | None) -> dict[tuple[str, int], int]:
    lines: dict[tuple[str, int], int] = {}
    aliases = _child(node, "aliases")
    if not isinstance(aliases, yaml.MappingNode):
        return lines
    for key, value in aliases.value:
        rules = _child(value, "require")
        if isinstance(rules, yaml.SequenceNode):
            for index, rule in enumerate(rules.value):
                lines[(str(key.value), index)] = rule.start_mark.line + 1
    return lines


def _child(node: yaml.Node | None, name: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    return next((value for key, value in node.value if key.value == name), None)
