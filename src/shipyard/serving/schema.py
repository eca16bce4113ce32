"""Checks a payload against the API's input schema: every bad field named, with its reason.

Values in messages are shown as JSON (`got true`, `got null`, `got "blue"`): the client sent JSON.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import orjson

from shipyard.errors import SchemaViolation
from shipyard.spec.models import FieldType, InputSchema, SchemaField

MAX_REPORTED = 20


@dataclass
class SchemaReport:
    """What a valid payload carried that the schema lets pass with a warning."""

    unknown_categories: list[str] = field(default_factory=list)


class SchemaChecker:
    def __init__(self, schema: InputSchema) -> None:
        self.schema = schema
        self._fields = list(schema.fields.items())
        self._names = set(schema.fields)
        self._enums = {name: set(map(_hashable, f.enum)) for name, f in schema.fields.items() if f.enum}

    def check(self, payload: Any) -> SchemaReport:
        """Raise SchemaViolation naming every bad field; return the warnings for a payload that passes."""
        problems: dict[str, str] = {}
        report = SchemaReport()
        if isinstance(payload, list):
            if not payload:
                raise SchemaViolation({"(payload)": "must hold at least one record, got an empty list"})
            for index, record in enumerate(payload):
                self._check_record(record, f"[{index}].", problems, report)
        else:
            self._check_record(payload, "", problems, report)
        if problems:
            shown = dict(list(problems.items())[:MAX_REPORTED])
            raise SchemaViolation(shown, omitted=len(problems) - len(shown))
        return report

    def check_inputs(self, names: Collection[str]) -> None:
        """OIP v2 inputs as columns: every required field is one of them, and an input named after no field is
        refused when extra_fields is reject. Raise SchemaViolation naming each problem."""
        problems: dict[str, str] = {}
        for name, spec in self._fields:
            if spec.required and name not in names:
                problems[name] = "required field is missing; send it as an input tensor of shape [n]"
        if self.schema.extra_fields == "reject":
            for name in names:
                if name not in self._names:
                    problems[name] = f"unknown input; the schema has the fields {', '.join(self.schema.fields)}"
        if not problems and self._names.isdisjoint(names):
            problems["(inputs)"] = (
                f"no input is named after a schema field; send the fields as tensors of shape [n]: "
                f"{', '.join(self.schema.fields)}"
            )
        if problems:
            raise SchemaViolation(problems)

    def _check_record(self, record: Any, prefix: str, problems: dict[str, str], report: SchemaReport) -> None:
        if not isinstance(record, dict):
            names = ", ".join(self.schema.fields)
            problems[prefix.rstrip(".") or "(payload)"] = (
                f"must be a record (a JSON object with fields {names}), got {json_type(record)}"
            )
            return
        for name, spec in self._fields:
            if name not in record:
                if spec.required:
                    problems[prefix + name] = "required field is missing"
                continue
            if record[name] is None:
                if spec.required:
                    problems[prefix + name] = "must not be null (the field is required)"
                continue
            reason = self._check_value(name, spec, record[name])
            if reason == "unknown":
                if self.schema.unknown_categories == "warn":
                    report.unknown_categories.append(name)
                    continue
                reason = f"unknown category {show(record[name])}; expected one of {show(spec.enum)}"
            if reason:
                problems[prefix + name] = reason
        if self.schema.extra_fields == "reject":
            for extra in record.keys() - self._names:
                problems[prefix + extra] = f"unknown field; the schema has: {', '.join(self.schema.fields)}"

    def _check_value(self, name: str, spec: SchemaField, value: Any) -> str | None:
        reason = _type_problem(spec.type, value)
        if reason:
            return reason
        if name in self._enums and _hashable(value) not in self._enums[name]:
            return "unknown"
        if spec.min is not None and value < spec.min:
            return f"must be >= {spec.min:g}, got {show(value)}"
        if spec.max is not None and value > spec.max:
            return f"must be <= {spec.max:g}, got {show(value)}"
        return None


def _type_problem(kind: FieldType, value: Any) -> str | None:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    ok = {
        FieldType.float: is_number,
        FieldType.int: is_number and float(value).is_integer(),
        FieldType.str: isinstance(value, str),
        FieldType.bool: isinstance(value, bool),
    }[kind]
    if ok:
        return None
    expected = {"float": "a number", "int": "a whole number", "str": "a string", "bool": "true or false"}
    return f"must be {expected[kind.value]}, got {show(value)}"


def show(value: Any) -> str:
    """A value as the client wrote it: JSON, cut short when long."""
    try:
        text = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    except TypeError:
        text = json_type(value)
    return text if len(text) <= 60 else text[:57] + "..."


def json_type(value: Any) -> str:
    """The JSON kind of a value, for messages: an object, an array, a string, a number, a boolean or null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return "a string" if isinstance(value, str) else type(value).__name__


def _hashable(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool) or value is None else repr(value)
