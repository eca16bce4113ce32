"""What a parsed CEL rule uses: the field paths it reads and any name it cannot know.

Works on celpy's syntax tree, so string literals, method calls (`candidate.tags.team.startsWith("ml")`),
index access (`candidate.metrics["f1"]`, `candidate.lineage.data[0]`) and the variables that macros
bind (`candidate.metrics.all(k, ...)`) are told apart exactly.
"""

from __future__ import annotations

import ast
import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import celpy.evaluation
from lark import Token, Tree

ROOTS = ("candidate", "current", "evidence")
_TYPE_NAMES = frozenset(
    {"bool", "bytes", "double", "duration", "int", "list", "map", "null_type", "string", "timestamp", "type", "uint"}
)
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
_GLOBAL_MACROS = frozenset({"has", "dyn"})
_FUNCTIONS = frozenset(name for name in celpy.evaluation.base_functions if re.fullmatch(r"[A-Za-z_]\w*", name))
# nodes that only pass one child through (precedence levels of the grammar)
_PASSTHROUGH = frozenset(
    {"expr", "conditionalor", "conditionaland", "relation", "addition", "multiplication", "unary", "member", "primary"}
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

Part = str | int


@dataclass(frozen=True)
class FieldPath:
    """`candidate.metrics.f1` as ("candidate", "metrics", "f1"); an int part indexes a list."""

    parts: tuple[Part, ...]

    def __str__(self) -> str:
        shown = str(self.parts[0])
        for part in self.parts[1:]:
            if isinstance(part, int):
                shown += f"[{part}]"
            elif _IDENTIFIER.fullmatch(part):
                shown += f".{part}"
            else:
                shown += f"[{part!r}]"
        return shown


@dataclass(frozen=True)
class UnknownName:
    name: str
    kind: str
    """"variable" or "function"."""
    column: int
    """1-based column in the expression (in its line `line`)."""
    line: int = 1

    def describe(self) -> str:
        known = ROOTS if self.kind == "variable" else sorted(_FUNCTIONS | _MACROS | _GLOBAL_MACROS)
        close = difflib.get_close_matches(self.name, known, n=1)
        hint = f"did you mean {close[0]}?" if close else ""
        if self.kind == "variable":
            hint = hint or "rules can use candidate, current and evidence"
        where = f"line {self.line} column {self.column}" if self.line > 1 else f"column {self.column}"
        return f"unknown {self.kind} {self.name!r} at {where}" + (f" ({hint})" if hint else "")


def field_paths(tree: Tree[Any]) -> list[FieldPath]:
    """Each path under candidate/current/evidence that `tree` reads, longest form, in order of appearance."""
    found = [FieldPath(parts) for parts in _walk(tree, frozenset()) if isinstance(parts, tuple)]
    return list(dict.fromkeys(found))


def unknown_names(tree: Tree[Any]) -> list[UnknownName]:
    """Variables other than candidate/current/evidence (and macro variables), and functions CEL lacks."""
    return [item for item in _walk(tree, frozenset()) if isinstance(item, UnknownName)]


def _walk(node: Any, bound: frozenset[str]) -> Iterator[tuple[Part, ...] | UnknownName]:
    if not isinstance(node, Tree):
        return
    chain = _chain(node)
    if chain is not None:
        yield from _root(chain, bound)
        return
    kind = str(node.data)
    children: list[Any] = [child for child in node.children if child is not None]
    if kind == "member_dot_arg":
        yield from _method(children, bound)
    elif kind in ("ident_arg", "dot_ident_arg"):
        name = children[0]
        if name not in _FUNCTIONS and name not in _GLOBAL_MACROS:
            yield UnknownName(str(name), "function", *_place(name))
        for child in children[1:]:
            yield from _walk(child, bound)
    else:
        for child in children:
            yield from _walk(child, bound)


def _root(chain: tuple[Token, tuple[Part, ...]], bound: frozenset[str]) -> Iterator[tuple[Part, ...] | UnknownName]:
    token, parts = chain
    name = str(token)
    if name in bound or name in _TYPE_NAMES:
        return
    if name in ROOTS:
        yield parts
    else:
        yield UnknownName(name, "variable", *_place(token))


def _method(children: list[Any], bound: frozenset[str]) -> Iterator[tuple[Part, ...] | UnknownName]:
    target, name, *rest = children
    arguments = [child for child in rest[0].children if child is not None] if rest else []
    yield from _walk(target, bound)
    if name in _MACROS and arguments and (variable := _chain(arguments[0])) is not None:
        inner = bound | {str(variable[0])}
        for argument in arguments[1:]:
            yield from _walk(argument, inner)
        return
    if name not in _FUNCTIONS:
        yield UnknownName(str(name), "function", *_place(name))
    for argument in arguments:
        yield from _walk(argument, bound)


def _chain(node: Any) -> tuple[Token, tuple[Part, ...]] | None:
    """(root token, parts) when `node` is only a name followed by fields and constant indexes."""
    node = _unwrap(node)
    if not isinstance(node, Tree):
        return None
    kind = str(node.data)
    children: list[Any] = [child for child in node.children if child is not None]
    if kind in ("ident", "dot_ident"):
        return children[0], (str(children[0]),)
    if kind not in ("member_dot", "member_index"):
        return None
    base = _chain(children[0])
    if base is None:
        return None
    part = str(children[1]) if kind == "member_dot" else _constant(children[1])
    return None if part is None else (base[0], (*base[1], part))


def _place(token: Token) -> tuple[int, int]:
    """(column, line) of a token, 1-based."""
    return int(token.column or 0), int(token.line or 1)


def _unwrap(node: Any) -> Any:
    while isinstance(node, Tree) and str(node.data) in _PASSTHROUGH:
        children = [child for child in node.children if child is not None]
        if len(children) != 1 or not isinstance(children[0], Tree):
            return node
        node = children[0]
    return node


def _constant(node: Any) -> Part | None:
    """A string or integer literal used as an index, else None."""
    node = _unwrap(node)
    if not (isinstance(node, Tree) and str(node.data) == "literal" and node.children):
        return None
    token: Any = node.children[0]
    try:
        if token.type in ("STRING_LIT", "MLSTRING_LIT"):
            value = ast.literal_eval(str(token))
            return value if isinstance(value, str) else None
        if token.type == "INT_LIT":
            return int(str(token), 0)
    except (ValueError, SyntaxError):
        return None
    return None
