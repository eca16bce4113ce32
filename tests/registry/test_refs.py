from __future__ import annotations

import re

import pytest

from shipyard.registry.errors import InvalidModelRef, InvalidName
from shipyard.registry.refs import ModelRef, check_alias, check_name, parse_ref


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("iris", ModelRef("iris")),
        ("models:/iris", ModelRef("iris")),
        ("iris:3", ModelRef("iris", version=3)),
        ("models:/iris:12", ModelRef("iris", version=12)),
        ("models:/iris@production", ModelRef("iris", alias="production")),
        ("fraud.v2-model@staging", ModelRef("fraud.v2-model", alias="staging")),
        ("iris@latest", ModelRef("iris")),
    ],
)
def test_parse_ref(text: str, expected: ModelRef) -> None:
    assert parse_ref(text) == expected


BAD_REFS = [
    "",
    "models:/",
    "iris:",
    "iris:0",
    "iris:v3",
    "iris@",
    "iris@Prod",
    "iris:1@x",
    "../etc",
    "iris/2",
]


@pytest.mark.parametrize("text", [*BAD_REFS, "models:/a b"])
def test_bad_refs_say_what_is_expected(text: str) -> None:
    with pytest.raises((InvalidModelRef, InvalidName), match=r"NAME|alias"):
        parse_ref(text)


def test_ref_renders_back() -> None:
    assert [str(parse_ref(text)) for text in ("iris", "iris:2", "iris@prod")] == [
        "iris",
        "iris:2",
        "iris@prod",
    ]


def test_latest_cannot_be_an_alias_target() -> None:
    with pytest.raises(InvalidName, match="'latest' always means the newest version"):
        check_alias("latest")


def test_name_rule_is_in_the_message() -> None:
    with pytest.raises(InvalidName, match="model name '-x' is not valid: use up to 128 letters"):
        check_name("-x")


@pytest.mark.parametrize(
    ("model", "problem"),
    [
        ("models:/pk:abc", "must be models:/NAME, models:/NAME@ALIAS or models:/NAME:VERSION, got 'models:/pk:abc'"),
        ("models:/pk@Prod", "got 'models:/pk@Prod': alias 'Prod' is not valid: use up to 64 lower-case letters"),
        ("models:/pk:0", "got 'models:/pk:0'"),
        ("models:/-pk", "got 'models:/-pk'"),
        ("models:/pk", None),
        ("models:/pk:3", None),
        ("models:/pk@production", None),
        ("models:/pk@latest", None),
    ],
)
def test_shipyard_yaml_accepts_exactly_the_references_the_registry_resolves(model: str, problem: str | None) -> None:
    from pydantic import ValidationError

    from shipyard.spec import RealtimeAPI

    spec = {"name": "api", "handler": "handler.py:Handler", "model": model}
    if problem is None:
        RealtimeAPI.model_validate(spec)
        parse_ref(model)
        return
    with pytest.raises(ValidationError, match=re.escape(problem)):
        RealtimeAPI.model_validate(spec)
