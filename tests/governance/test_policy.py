"""Policy evaluation: each rule shape, missing fields, bad expressions, approvals, recorded values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shipyard.errors import ConfigError
from shipyard.governance import AliasRules, evaluate, load_policies_file
from shipyard.governance.policy import MISSING, compile_rule, references

CANDIDATE: dict[str, Any] = {
    "name": "iris",
    "version": 3,
    "metrics": {"accuracy": 0.93, "latency_ms": 12.0},
    "tags": {"owner": "ana", "team": ""},
    "lineage": {"data": [{"digest": "sha256:ab"}], "python": {"version": "3.11.7"}},
    "created_by": "ana",
}
CURRENT: dict[str, Any] = {
    "name": "iris",
    "version": 2,
    "metrics": {"accuracy": 0.92},
    "tags": {},
    "lineage": {},
}


def verdict_of(*expressions: str, current: dict[str, Any] | None = None, approvals: int = 0, approvers=()):
    rules = AliasRules("production", tuple(compile_rule(text) for text in expressions), approvals)
    return evaluate(rules, CANDIDATE, current, {"approvals": len(approvers), "approvers": list(approvers)})


@pytest.mark.parametrize(
    ("expression", "passed"),
    [
        ("candidate.metrics.accuracy >= 0.90", True),
        ("candidate.metrics.accuracy >= 0.95", False),
        ("candidate.metrics.latency_ms < 20.0 && candidate.metrics.accuracy > 0.9", True),
        ("candidate.tags.owner != ''", True),
        ("candidate.tags.team != ''", False),
        ("has(candidate.lineage.data)", True),
        ("has(candidate.lineage.code)", False),
        ("candidate.lineage.python.version.startsWith('3.11')", True),
        ("candidate.name in ['iris', 'wine']", True),
        ("size(candidate.lineage.data) >= 1", True),
    ],
)
def test_rule_shapes_without_current(expression: str, passed: bool) -> None:
    result = verdict_of(expression).rules[0]
    assert (result.passed, result.error) == (passed, None)


def test_guarded_comparison_passes_on_first_promotion() -> None:
    rule = "!has(current) || candidate.metrics.accuracy >= current.metrics.accuracy - 0.005"
    assert verdict_of(rule, current=None).allowed


@pytest.mark.parametrize(("current_accuracy", "allowed"), [(0.92, True), (0.935, True), (0.94, False)])
def test_guarded_comparison_against_current(current_accuracy: float, allowed: bool) -> None:
    rule = "!has(current) || candidate.metrics.accuracy >= current.metrics.accuracy - 0.005"
    current = CURRENT | {"metrics": {"accuracy": current_accuracy}}
    verdict = verdict_of(rule, current=current)
    assert verdict.allowed is allowed
    assert verdict.rules[0].values["current.metrics.accuracy"] == current_accuracy
    assert verdict.rules[0].values["candidate.metrics.accuracy"] == 0.93


def test_missing_field_fails_and_names_it() -> None:
    result = verdict_of("candidate.metrics.f1 >= 0.8").rules[0]
    assert not result.passed
    assert result.error == "field candidate.metrics.f1 is missing"
    assert result.values == {"candidate.metrics.f1": MISSING}


def test_unguarded_current_on_first_promotion_names_current() -> None:
    result = verdict_of("candidate.metrics.accuracy >= current.metrics.accuracy").rules[0]
    assert not result.passed
    assert result.error == "field current.metrics.accuracy is missing"


def test_type_mismatch_fails_with_reason() -> None:
    result = verdict_of("candidate.metrics.accuracy > 'high'").rules[0]
    assert not result.passed
    assert result.error is not None
    assert result.error.startswith("cannot be evaluated")


def test_non_boolean_rule_fails() -> None:
    result = verdict_of("candidate.metrics.accuracy").rules[0]
    assert (result.passed, result.error) == (False, "must give true or false, gave 0.93")


def test_one_failing_rule_refuses_and_lists_only_failures() -> None:
    verdict = verdict_of("candidate.metrics.accuracy >= 0.9", "candidate.metrics.accuracy >= 0.99")
    assert not verdict.allowed
    assert [rule.passed for rule in verdict.rules] == [True, False]
    assert verdict.failures() == ["candidate.metrics.accuracy >= 0.99 failed [candidate.metrics.accuracy=0.93]"]


@pytest.mark.parametrize(("approvers", "allowed"), [((), False), (("bo",), True), (("bo", "cy"), True)])
def test_approvals_are_counted(approvers: tuple[str, ...], allowed: bool) -> None:
    verdict = verdict_of("true", approvals=1, approvers=approvers)
    assert verdict.allowed is allowed
    assert verdict.to_dict()["approvals"] == {"required": 1, "approvers": list(approvers)}


def test_evidence_is_visible_to_rules() -> None:
    assert verdict_of("evidence.approvals >= 2", approvers=("bo", "cy")).allowed
    assert not verdict_of("evidence.approvals >= 2", approvers=("bo",)).allowed


def test_no_rules_allows() -> None:
    assert verdict_of().allowed


def test_references_ignore_string_literals() -> None:
    text = "candidate.tags.owner != 'candidate.metrics.fake' && has(current.metrics.accuracy)"
    assert references(text) == ["candidate.tags.owner", "current.metrics.accuracy"]


def test_expressions_cannot_reach_python() -> None:
    result = verdict_of("__import__('os').system('true') == 0").rules[0]
    assert not result.passed


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policies.yaml"
    path.write_text(text)
    return path


def test_policy_file_loads_rules_per_alias(tmp_path: Path) -> None:
    policies = load_policies_file(
        write(
            tmp_path,
            "aliases:\n  production:\n    require:\n      - candidate.metrics.accuracy > 0.5\n"
            "    approvals: 2\n  staging: {}\n",
        )
    )
    assert policies.for_alias("production").approvals == 2
    assert [rule.expression for rule in policies.for_alias("production").rules] == ["candidate.metrics.accuracy > 0.5"]
    assert policies.for_alias("staging").rules == ()
    assert policies.for_alias("unlisted").rules == ()


def test_parse_error_reports_line_and_column(tmp_path: Path) -> None:
    text = (
        "aliases:\n  production:\n    require:\n      - candidate.metrics.accuracy > 0.5\n"
        "      - 'candidate.metrics.accuracy >= '\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_policies_file(write(tmp_path, text))
    (problem,) = caught.value.problems
    assert problem.startswith(f"{tmp_path / 'policies.yaml'}:5: aliases.production.require.1: ")
    assert problem.endswith("does not parse at column 28: the expression ends too early")


def test_every_bad_rule_is_reported_at_once(tmp_path: Path) -> None:
    text = "aliases:\n  a:\n    require: ['1 +', 'candidate.x >= 1']\n  b:\n    require: ['(((']\n"
    with pytest.raises(ConfigError) as caught:
        load_policies_file(write(tmp_path, text))
    assert [line.split(": ")[1] for line in caught.value.problems] == [
        "aliases.a.require.0",
        "aliases.b.require.0",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("aliases:\n  production:\n    requires: []\n", "aliases.production.requires: unknown key"),
        (
            "aliases:\n  production:\n    approvals: -1\n",
            "aliases.production.approvals: Input should be greater",
        ),
        ("aliases: [1, 2]\n", "aliases: Input should be a valid dictionary"),
        ("aliases:\n  production: {require: [1\n", "not valid YAML"),
    ],
)
def test_malformed_policy_file(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[")):
        load_policies_file(write(tmp_path, text))


def test_empty_policy_file_has_no_rules(tmp_path: Path) -> None:
    assert load_policies_file(write(tmp_path, "")).aliases == {}
