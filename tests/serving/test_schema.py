from __future__ import annotations

import pytest

from shipyard.errors import SchemaViolation
from shipyard.serving.schema import SchemaChecker
from shipyard.spec.models import InputSchema


def _checker(**overrides: object) -> SchemaChecker:
    schema = {
        "fields": {
            "age": {"type": "int", "min": 0, "max": 130},
            "income": {"type": "float", "required": False},
            "city": {"type": "str", "enum": ["paris", "oslo"]},
            "member": {"type": "bool", "required": False},
        },
        **overrides,
    }
    return SchemaChecker(InputSchema.model_validate(schema))


def _fields(checker: SchemaChecker, payload: object) -> dict[str, str]:
    with pytest.raises(SchemaViolation) as caught:
        checker.check(payload)
    return caught.value.fields


def test_a_valid_record_and_list_pass() -> None:
    checker = _checker()
    assert checker.check({"age": 30, "city": "oslo"}).unknown_categories == []
    assert checker.check([{"age": 30.0, "city": "oslo", "income": 3, "member": True}]).unknown_categories == []


def test_each_bad_field_has_its_reason() -> None:
    fields = _fields(_checker(), {"age": 2.5, "income": "lots", "city": "rome", "member": "yes"})
    assert fields == {
        "age": "must be a whole number, got 2.5",
        "income": 'must be a number, got "lots"',
        "city": 'unknown category "rome"; expected one of ["paris","oslo"]',
        "member": 'must be true or false, got "yes"',
    }


def test_missing_range_and_bools_are_not_numbers() -> None:
    assert _fields(_checker(), {"age": 200}) == {
        "age": "must be <= 130, got 200",
        "city": "required field is missing",
    }
    assert _fields(_checker(), {"age": True, "city": "oslo"}) == {"age": "must be a whole number, got true"}
    assert _fields(_checker(), {"age": 1, "city": None, "income": None}) == {
        "city": "must not be null (the field is required)"
    }
    assert _fields(_checker(), {"age": -1, "city": "oslo"}) == {"age": "must be >= 0, got -1"}


def test_records_in_a_list_are_named_by_index() -> None:
    fields = _fields(_checker(), [{"age": 1, "city": "oslo"}, {"age": 1}, 7])
    assert fields == {
        "[1].city": "required field is missing",
        "[2]": "must be a record (a JSON object with fields age, income, city, member), got a number",
    }
    assert _fields(_checker(), [None]) == {
        "[0]": "must be a record (a JSON object with fields age, income, city, member), got null"
    }
    assert _fields(_checker(), []) == {"(payload)": "must hold at least one record, got an empty list"}


def test_unknown_categories_can_warn_and_extra_fields_can_be_refused() -> None:
    warned = _checker(unknown_categories="warn").check({"age": 1, "city": "rome"})
    assert warned.unknown_categories == ["city"]
    strict = _checker(extra_fields="reject")
    assert _fields(strict, {"age": 1, "city": "oslo", "zip": 1}) == {
        "zip": "unknown field; the schema has: age, income, city, member"
    }


def test_a_long_list_of_problems_says_how_many_were_left_out() -> None:
    with pytest.raises(SchemaViolation) as caught:
        _checker().check([{"age": -1, "city": "oslo"}] * 25)
    assert len(caught.value.fields) == 20
    assert caught.value.omitted == 5
    assert caught.value.message.endswith("; and 5 more problems not listed")
    assert caught.value.to_dict()["fields_omitted"] == 5


def test_v2_inputs_must_include_the_required_fields_and_unknown_ones_follow_extra_fields() -> None:
    _checker().check_inputs(["age", "city", "note"])  # extra_fields: allow
    with pytest.raises(SchemaViolation) as caught:
        _checker(extra_fields="reject").check_inputs(["age", "note"])
    assert caught.value.fields == {
        "city": "required field is missing; send it as an input tensor of shape [n]",
        "note": "unknown input; the schema has the fields age, income, city, member",
    }
    optional = SchemaChecker(InputSchema.model_validate({"fields": {"a": {"type": "int", "required": False}}}))
    with pytest.raises(SchemaViolation, match=r"\(inputs\): no input is named after a schema field"):
        optional.check_inputs(["x"])
