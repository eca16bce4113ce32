"""Policy evaluation: each rule shape, missing fields, bad expressions, approvals, recorded values."""

from __future__ import annotations

import re
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
    with pytest.raises(ValueError, match="unknown function '__import__' at column 1"):
        compile_rule("__import__('os').system('true') == 0")


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
    assert problem.startswith(f"{tmp_path / 'policies.yaml'}:5:37: aliases.production.require.1: ")
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


# -- names a rule may use, checked when the file loads ----------------------------------------------------


def test_a_misspelt_variable_is_refused_at_load_with_its_position(tmp_path: Path) -> None:
    text = "aliases:\n  production:\n    require:\n      - candidat.metrics.accuracy > 0.1\n"
    with pytest.raises(ConfigError) as caught:
        load_policies_file(write(tmp_path, text))
    assert caught.value.problems == [
        f"{tmp_path / 'policies.yaml'}:4:9: aliases.production.require.0: CEL expression "
        "'candidat.metrics.accuracy > 0.1' uses an unknown variable 'candidat' at column 1 (did you mean candidate?)"
    ]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("accuracy > 0.9", "unknown variable 'accuracy' at column 1 (rules can use candidate, current and evidence)"),
        ("candidate.tags.team.startWith('ml')", "unknown function 'startWith' at column 21 (did you mean startsWith?)"),
        ("sze(candidate.tags) > 0", "unknown function 'sze' at column 1 (did you mean size?)"),
        ("candidate.metrics.all(k, j > 0)", "unknown variable 'j' at column 26"),
    ],
)
def test_unknown_names_are_refused(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        compile_rule(expression)


@pytest.mark.parametrize(
    "expression",
    [
        "candidate.metrics.all(k, candidate.metrics[k] > 0.5)",
        "candidate.lineage.data.exists(d, d.digest.startsWith('sha256:'))",
        "type(candidate.version) == int && has(current.metrics) == false",
        "candidate.tags.map(t, t).size() >= 0 && dyn(candidate.version) > 0",
    ],
)
def test_macros_functions_and_type_names_are_known(expression: str) -> None:
    compile_rule(expression)


# -- the fields a rule reads: named when missing, recorded when present --------------------------------------


@pytest.mark.parametrize(
    ("expression", "paths"),
    [
        ("candidate.tags.team.startsWith('ml')", ["candidate.tags.team"]),
        ("candidate.metrics['f1'] > 0.5", ["candidate.metrics.f1"]),
        ("candidate.metrics['f1-score'] > 0.5", ["candidate.metrics['f1-score']"]),
        ("candidate.lineage.data[0].digest != ''", ["candidate.lineage.data[0].digest"]),
        ("candidate.metrics.all(k, candidate.metrics[k] > 0.5)", ["candidate.metrics"]),
        ("size(candidate.lineage.data) >= 1 && 'staging' in candidate.aliases", ["candidate.lineage.data",
                                                                                  "candidate.aliases"]),
    ],
)  # fmt: skip
def test_field_paths_follow_calls_and_indexes(expression: str, paths: list[str]) -> None:
    assert references(expression) == paths


def test_a_missing_field_behind_a_method_call_or_index_is_named() -> None:
    tags = verdict_of("candidate.tags.squad.startsWith('ml')").rules[0]
    assert (tags.passed, tags.error) == (False, "field candidate.tags.squad is missing")
    f1 = verdict_of("candidate.metrics['f1'] > 0.5").rules[0]
    assert (f1.passed, f1.error, f1.values) == (False, "field candidate.metrics.f1 is missing", {
        "candidate.metrics.f1": MISSING,
    })  # fmt: skip


def test_passed_rules_with_calls_record_their_values() -> None:
    result = verdict_of("candidate.lineage.python.version.startsWith('3.11')").rules[0]
    assert (result.passed, result.values) == (True, {"candidate.lineage.python.version": "3.11.7"})


def test_small_values_are_recorded_whole_and_big_ones_by_size() -> None:
    result = verdict_of("size(candidate.lineage.data) >= 1 && size(candidate.metrics) < 100").rules[0]
    assert result.values == {
        "candidate.lineage.data": [{"digest": "sha256:ab"}],
        "candidate.metrics": {"accuracy": 0.93, "latency_ms": 12.0},
    }
    big = CANDIDATE | {"lineage": {"packages": {f"package-{n}": "1.0.0" for n in range(100)}}}
    rules = AliasRules("production", (compile_rule("size(candidate.lineage.packages) > 0"),))
    verdict = evaluate(rules, big, None, {"approvals": 0, "approvers": []})
    assert verdict.rules[0].values == {"candidate.lineage.packages": "{100 fields}"}


def test_evaluation_errors_are_short_and_readable() -> None:
    result = verdict_of("candidate.metrics.accuracy > 'high'").rules[0]
    assert result.error == "cannot be evaluated: found no matching overload for '>' applied to '(double, string)'"
    index = verdict_of("candidate.lineage.data[3].digest == ''").rules[0]
    assert index.error == "field candidate.lineage.data[3].digest is missing"


def test_an_activation_dump_never_reaches_the_verdict() -> None:
    from celpy.evaluation import CELEvalError

    from shipyard.governance.policy import MAX_ERROR_LENGTH, _detail

    huge = "undeclared reference to 'x' (in activation 'Activation(" + "package " * 2000 + ")')"
    assert _detail(CELEvalError(huge)) == "undeclared reference to 'x'"
    assert len(_detail(CELEvalError("y" * 5000))) == MAX_ERROR_LENGTH


# -- which policy governs an alias ------------------------------------------------------------------------


def test_alias_keys_follow_the_alias_grammar(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"aliases.Prod: alias 'Prod' is not valid: use up to 64 lower-case"):
        load_policies_file(write(tmp_path, "aliases:\n  Prod: {approvals: 1}\n"))


def test_an_unlisted_alias_is_allowed_and_says_so(tmp_path: Path) -> None:
    policies = load_policies_file(write(tmp_path, "aliases:\n  production: {approvals: 1}\n"))
    verdict = evaluate(policies.for_alias("staging"), CANDIDATE, None, {"approvers": []})
    assert verdict.allowed
    assert verdict.policy == f"no policy for alias 'staging' in {tmp_path / 'policies.yaml'}: allowed by default"
    assert evaluate(AliasRules("x", policy="p"), CANDIDATE, None, {}).policy == "p"


def test_default_deny_refuses_unlisted_aliases(tmp_path: Path) -> None:
    policies = load_policies_file(write(tmp_path, "aliases:\n  production: {}\ndefault: deny\n"))
    assert evaluate(policies.for_alias("production"), CANDIDATE, None, {}).allowed
    verdict = evaluate(policies.for_alias("staging"), CANDIDATE, None, {})
    assert not verdict.allowed
    assert verdict.failures() == [
        f"{tmp_path / 'policies.yaml'} does not list alias 'staging' and denies unlisted aliases (default: deny); "
        "add aliases.staging to it"
    ]


def test_a_default_policy_governs_unlisted_aliases(tmp_path: Path) -> None:
    text = "aliases:\n  dev: {}\ndefault:\n  require:\n    - candidate.metrics.accuracy > 0.99\n  approvals: 1\n"
    policies = load_policies_file(write(tmp_path, text))
    verdict = evaluate(policies.for_alias("staging"), CANDIDATE, None, {"approvers": []})
    assert [rule.passed for rule in verdict.rules] == [False]
    assert verdict.approvals_required == 1
    assert verdict.policy.startswith("default of ")


def test_a_bad_rule_in_default_is_reported_with_its_position(tmp_path: Path) -> None:
    text = "default:\n  require:\n    - candidat.version > 1\n"
    with pytest.raises(ConfigError, match=r"policies.yaml:3:7: default.require.0: CEL expression"):
        load_policies_file(write(tmp_path, text))


def test_a_near_miss_of_a_listed_alias_is_refused_as_a_typo(tmp_path: Path) -> None:
    policies = load_policies_file(write(tmp_path, "aliases:\n  prodution: {approvals: 2}\n"))
    verdict = evaluate(policies.for_alias("production"), CANDIDATE, None, {})
    assert not verdict.allowed
    assert "lists alias 'prodution' but not 'production', which looks like a typo" in verdict.failures()[0]
    assert evaluate(policies.for_alias("staging"), CANDIDATE, None, {}).allowed  # not near anything listed


@pytest.mark.parametrize("default", ["maybe", "[1]"])
def test_a_bad_default_is_explained(tmp_path: Path, default: str) -> None:
    with pytest.raises(ConfigError, match="default: must be allow, deny, or a policy with require/approvals"):
        load_policies_file(write(tmp_path, f"default: {default}\n"))


# -- the file itself: duplicates, empty sections, where multi-line rules sit ------------------------------


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path: Path) -> None:
    """YAML keeps the last of two equal keys: the second `production:` would drop the first one's rules."""
    text = (
        "aliases:\n  production:\n    require:\n      - candidate.metrics.accuracy >= 0.9\n"
        "  production:\n    require: []\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_policies_file(write(tmp_path, text))
    assert caught.value.problems == [
        f"{tmp_path / 'policies.yaml'}:5: duplicate key 'production' (first on line 2); keep one of them"
    ]


def test_a_key_repeated_inside_an_alias_is_refused(tmp_path: Path) -> None:
    text = "aliases:\n  production:\n    approvals: 2\n    approvals: 0\n"
    with pytest.raises(ConfigError, match=r"policies.yaml:4: duplicate key 'approvals' \(first on line 3\)"):
        load_policies_file(write(tmp_path, text))


def test_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    text = (
        "base: &strict\n  require: [candidate.metrics.accuracy >= 0.9]\n  approvals: 1\n"
        "aliases:\n  production:\n    <<: *strict\n    approvals: 2\n"
    )
    with pytest.raises(ConfigError, match="base: unknown key"):  # merge keys pass; the extra top key does not
        load_policies_file(write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "aliases:\n  production:\n",
            ":2: aliases.production: is empty; give the alias require and/or approvals, or write `{}` to allow "
            "it without rules",
        ),
        ("aliases:\n", ":1: aliases: is empty; give it a value or remove the key"),
        ("aliases:\n  production:\n    approvals:\n", ":3: aliases.production.approvals: is empty"),
    ],
)
def test_an_empty_section_is_one_clear_line(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_policies_file(write(tmp_path, text))
    (problem,) = caught.value.problems
    assert problem.startswith(f"{tmp_path / 'policies.yaml'}{expected}"), problem


@pytest.mark.parametrize(
    ("rule", "position", "where"),
    [
        ("|\n        candidate.metrics.accuracy >= 0.9 &&\n          candidate.x ==== 3", "6:25", "line 2 column 17"),
        (">\n        candidate.metrics.accuracy >= 0.9 &&\n        candidate.x ==== 3", "6:23", "column 52"),
        ("candidate.metrics.accuracy >= 0.9 &&\n        candidate.x ==== 3", "5:23", "column 52"),
        ("|\n        candidate.metrics.accuracy >= 0.9 &&\n        candidat.x == 3", "6:9", "line 2 column 1"),
    ],
)
def test_a_multi_line_rule_is_reported_at_its_own_line_and_column(
    tmp_path: Path, rule: str, position: str, where: str
) -> None:
    text = f"aliases:\n  production:\n    require:\n      - {rule}\n"
    with pytest.raises(ConfigError) as caught:
        load_policies_file(write(tmp_path, text))
    (problem,) = caught.value.problems
    assert problem.startswith(f"{tmp_path / 'policies.yaml'}:{position}: aliases.production.require.0: "), problem
    assert f" at {where}" in problem


def test_a_policy_file_records_its_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "aliases: {}\n")
    monkeypatch.chdir(tmp_path)
    policies = load_policies_file("policies.yaml")
    assert (policies.source, policies.path) == ("policies.yaml", str(tmp_path / "policies.yaml"))
