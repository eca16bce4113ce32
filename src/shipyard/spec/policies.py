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
from shipyard.spec.loader import _duplicate_keys as duplicate_keys

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


Segment = tuple[int, int, int]
"""(offset in the expression, 1-based line, 1-based column): where a run of the expression's characters
starts in the file. A rule spelled on one line has one segment; a multi-line rule one per line."""


@dataclass(frozen=True)
class LoadedPolicies:
    policies: PolicyFile
    source: str
    """The file name to show in messages."""
    lines: dict[tuple[str, int], int] = field(default_factory=dict)
    """1-based line of each rule, keyed by (alias, index in `require`); DEFAULT_SECTION for `default`."""
    segments: dict[tuple[str, int], tuple[Segment, ...]] = field(default_factory=dict)
    """Where each rule's characters sit in the file, when the file spells the rule verbatim."""
    digest: str = ""
    """sha256 of the file's bytes: which exact policy a promotion was judged by."""
    path: str = ""
    """The file's absolute path, for the audit log (`source` is as the user gave it)."""

    def position(self, alias: str, index: int, line: int | None = None, column: int | None = None) -> str:
        """`file:line:column` of a rule, or of a spot in it (1-based line and column in the expression)."""
        found = self.lines.get((alias, index))
        if found is None:
            return self.source
        segments = self.segments.get((alias, index), ())
        if not segments or column is None:
            return f"{self.source}:{found}"
        expression = self.rule(alias, index)
        offset = sum(len(text) + 1 for text in expression.split("\n")[: (line or 1) - 1]) + column - 1
        start, at_line, at_column = max((s for s in segments if s[0] <= offset), default=segments[0])
        return f"{self.source}:{at_line}:{at_column + offset - start}"

    def rule(self, alias: str, index: int) -> str:
        section = self.policies.aliases.get(alias) if alias != DEFAULT_SECTION else self.policies.default
        return section.require[index] if isinstance(section, AliasPolicy) else ""


def load_policies(path: str | os.PathLike[str]) -> LoadedPolicies:
    """Read and validate policies.yaml; raises ConfigError with one line per problem."""
    source = Path(path)
    shown = str(path)
    raw, text = _read(source, shown)
    node, data = _parse(text, shown)
    try:
        policies = PolicyFile.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise ConfigError([_problem(error, shown, node) for error in exc.errors(include_url=False)]) from None
    lines, segments = _rule_positions(node, text.splitlines())
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    return LoadedPolicies(policies, shown, lines, segments, digest, str(Path(os.path.abspath(source))))


def _read(source: Path, shown: str) -> tuple[bytes, str]:
    """The file's bytes and text; one clear line when it cannot be read (a folder, a dangling link)."""
    if source.is_symlink() and not source.exists():
        target = os.readlink(source)
        raise ConfigError([f"{shown}: is a symbolic link to {target!r}, which does not exist; fix or remove the link"])
    if source.is_dir():
        raise ConfigError([f"{shown}: is a folder, not a policy file; remove it or put the policies in a file"])
    try:
        raw = source.read_bytes()
        return raw, raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{shown}: cannot read the policy file: it is not UTF-8 text ({exc.reason})"]) from None
    except OSError as exc:
        raise ConfigError([f"{shown}: cannot read the policy file: {exc.strerror or exc}"]) from None


def _parse(text: str, shown: str) -> tuple[yaml.Node | None, Any]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise ConfigError([f"{shown}{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}"]) from None
    duplicates = duplicate_keys(node, shown)
    if duplicates:  # YAML keeps the last of two equal keys: a second `production:` would replace the rules
        raise ConfigError(duplicates)
    return node, data


def _problem(error: Any, shown: str, node: yaml.Node | None) -> str:
    loc = tuple(part for part in error["loc"] if part != "[key]")
    where = ".".join(str(part) for part in loc) or "(top level)"
    line = _line_of(node, loc)
    at = f"{shown}:{line}" if line else shown
    if error["loc"][-1:] == ("[key]",):
        return f"{at}: {where}: {error['msg'].removeprefix('Value error, ')}"
    if error["type"] == "extra_forbidden":
        return (
            f"{at}: {where}: unknown key; allowed keys: aliases, default, and per alias (or in default) "
            "require, approvals"
        )
    if error.get("input", "") is None:
        return f"{at}: {where}: is empty; {_EMPTY_REMEDY.get(len(loc), 'give it a value or remove the key')}"
    if loc[:1] == ("default",):
        return f"{at}: default: must be allow, deny, or a policy with require/approvals, got {error.get('input')!r}"
    return f"{at}: {where}: {error['msg'].removeprefix('Value error, ')}, got {error.get('input')!r}"


_EMPTY_REMEDY = {
    1: "give it a value or remove the key",
    2: "give the alias require and/or approvals, or write `{}` to allow it without rules",
}


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the key at `loc`, or of the nearest enclosing key the file has."""
    found = None
    for part in loc:
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            found = node.start_mark.line + 1
            continue
        match = [(key, value) for key, value in _pairs(node) if key.value == str(part)]
        if not match:
            break
        found = match[0][0].start_mark.line + 1
        node = match[0][1]
    return found


def _rule_positions(
    node: yaml.Node | None, source: list[str]
) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], tuple[Segment, ...]]]:
    lines: dict[tuple[str, int], int] = {}
    segments: dict[tuple[str, int], tuple[Segment, ...]] = {}
    sections = [(str(key.value), value) for key, value in _pairs(_child(node, "aliases"))]
    for alias, section in [*sections, (DEFAULT_SECTION, _child(node, "default"))]:
        rules = _child(section, "require")
        if not isinstance(rules, yaml.SequenceNode):
            continue
        for index, rule in enumerate(rules.value):
            found = _segments(rule, source)
            block = isinstance(rule, yaml.ScalarNode) and rule.style in ("|", ">")
            lines[(alias, index)] = found[0][1] if found else rule.start_mark.line + 1 + (1 if block else 0)
            if found:
                segments[(alias, index)] = found
    return lines, segments


def _segments(rule: yaml.Node, source: list[str]) -> tuple[Segment, ...]:
    """Where the rule's text sits in the file, line by line; empty when the file does not spell it as is
    (escapes in a quoted string, say)."""
    if not isinstance(rule, yaml.ScalarNode) or rule.start_mark.line >= len(source):
        return ()
    pieces = _block_pieces(rule, source) if rule.style in ("|", ">") else _flow_pieces(rule, source)
    joiner = "\n" if rule.style == "|" else " "
    if joiner.join(text for _, _, text in pieces).rstrip("\n") != rule.value.rstrip("\n"):
        return ()
    found, offset = [], 0
    for line, column, text in pieces:
        found.append((offset, line + 1, column + 1))
        offset += len(text) + 1
    return tuple(found)


def _block_pieces(rule: yaml.ScalarNode, source: list[str]) -> list[tuple[int, int, str]]:
    """(0-based line, 0-based column, text) of each content line of a `|` or `>` block."""
    last = min(rule.end_mark.line + 1, len(source))
    rows = [(number, source[number]) for number in range(rule.start_mark.line + 1, last)]
    while rows and not rows[-1][1].strip():
        rows.pop()
    indent = min((len(text) - len(text.lstrip(" ")) for _, text in rows if text.strip()), default=0)
    return [(number, indent, text[indent:]) for number, text in rows]


def _flow_pieces(rule: yaml.ScalarNode, source: list[str]) -> list[tuple[int, int, str]]:
    """(0-based line, 0-based column, text) of each line of a plain or quoted scalar."""
    quote = 1 if rule.style in ("'", '"') else 0
    first, last = rule.start_mark.line, min(rule.end_mark.line, len(source) - 1)
    pieces = []
    for number in range(first, last + 1):
        text = source[number]
        start = rule.start_mark.column + quote if number == first else len(text) - len(text.lstrip(" "))
        end = rule.end_mark.column - quote if number == rule.end_mark.line else len(text.rstrip(" "))
        pieces.append((number, start, text[start:end]))
    return pieces


def _pairs(node: yaml.Node | None) -> list[tuple[yaml.Node, yaml.Node]]:
    return list(node.value) if isinstance(node, yaml.MappingNode) else []


def _child(node: yaml.Node | None, name: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    return next((value for key, value in node.value if key.value == name), None)
