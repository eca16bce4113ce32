"""Model references: `NAME`, `NAME:VERSION`, `NAME@ALIAS`, each optionally prefixed with `models:/`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shipyard.registry.errors import InvalidModelRef, InvalidName, ValueTooLong

PREFIX = "models:/"
NAME_RULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
ALIAS_RULE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
LATEST = "latest"
_REF = re.compile(r"^(?P<name>[^:@]+)(?::(?P<version>[0-9]+)|@(?P<alias>[^:@]+))?$")


@dataclass(frozen=True)
class ModelRef:
    """A parsed reference; at most one of `version` and `alias` is set (neither means the latest)."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        return f"{self.name}@{self.alias}" if self.alias else self.name


def parse_ref(text: str) -> ModelRef:
    body = text[len(PREFIX) :] if text.startswith(PREFIX) else text
    match = _REF.match(body)
    if match is None or not NAME_RULE.match(match["name"]):
        raise InvalidModelRef(text)
    version = int(match["version"]) if match["version"] else None
    if version is not None and version < 1:
        raise InvalidModelRef(text)
    alias = match["alias"]
    if alias is not None and alias != LATEST:
        check_alias(alias)
    return ModelRef(match["name"], version, None if alias == LATEST else alias)


def check_model_ref(text: str) -> str:
    """`text` if it parses as a reference; else ValueError with the reason (for pydantic validators)."""
    expected = f"must be models:/NAME, models:/NAME@ALIAS or models:/NAME:VERSION, got {text!r}"
    try:
        parse_ref(text)
    except InvalidModelRef:
        raise ValueError(expected) from None
    except InvalidName as exc:
        raise ValueError(f"{expected}: {exc.message}") from None
    return text


def check_name(name: str) -> str:
    if not NAME_RULE.match(name):
        raise InvalidName(
            "model name",
            name,
            "use up to 128 letters, digits, '_', '.' or '-', starting with a letter or digit",
        )
    return name


def check_length(what: str, value: str | None, limit: int) -> str | None:
    """`value` when it fits a column of `limit` characters (SQLite would keep a longer one, PostgreSQL
    refuse it); ValueTooLong otherwise."""
    if value is not None and len(value) > limit:
        raise ValueTooLong(what, value, limit)
    return value


def check_alias(alias: str) -> str:
    if not ALIAS_RULE.match(alias):
        raise InvalidName("alias", alias, "use up to 64 lower-case letters, digits, '_' or '-', starting with a letter")
    if alias == LATEST:
        raise InvalidName("alias", alias, "'latest' always means the newest version and cannot be moved")
    return alias
