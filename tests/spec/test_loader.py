"""Every way a shipyard.yaml can be wrong, and the one line that says so."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from shipyard.errors import ConfigError
from shipyard.spec import BatchAPI, RealtimeAPI, TrafficSplitter, load


def _problems(tmp_path: Path, text: str) -> list[str]:
    (tmp_path / "shipyard.yaml").write_text(textwrap.dedent(text))
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)
    return caught.value.problems


def test_a_valid_project_with_every_kind(tmp_path: Path) -> None:
    (tmp_path / "shipyard.yaml").write_text(
        textwrap.dedent("""
        - name: iris
          handler: sklearn
          model: model/
          batching: {max_batch_size: 16, max_wait_ms: 2}
          timeout: 250ms
          max_body_size: 1Mi
          autoscaling: {min_replicas: 1, max_replicas: 4, window: 30s, downscale_stabilization: 2m}
          update_strategy: {max_surge: 1, max_unavailable: 0%}
          compute: {cpu: 500m, mem: 1Gi}
          monitoring: {sample_rate: 0.1, slo: {p99_ms: 100}}
        - name: iris-v2
          handler: handler.py:Model
        - name: nightly
          kind: BatchAPI
          handler: handler.py:Model
          workers: 2
        - name: front
          kind: TrafficSplitter
          apis: [{name: iris, weight: 90}, {name: iris-v2, weight: 10}, {name: iris-v2, weight: 5, shadow: true}]
    """).replace("{name: iris-v2, weight: 5, shadow: true}", "{name: iris, weight: 0, shadow: true}")
    )
    with pytest.raises(ConfigError):  # iris appears twice in the splitter
        load(tmp_path)
    text = (tmp_path / "shipyard.yaml").read_text().replace(", {name: iris, weight: 0, shadow: true}", "")
    (tmp_path / "shipyard.yaml").write_text(text)
    project = load(tmp_path)
    iris, v2, nightly, front = project.apis
    assert isinstance(iris, RealtimeAPI) and isinstance(v2, RealtimeAPI)
    assert isinstance(nightly, BatchAPI) and isinstance(front, TrafficSplitter)
    assert iris.timeout == 0.25
    assert iris.max_body_size == 1024**2
    assert iris.autoscaling.downscale_stabilization == 120
    assert iris.compute.cpu == 0.5
    assert iris.compute.mem == 1024**3
    assert iris.update_strategy.max_unavailable == "0%"
    assert v2.batching is None and v2.concurrency.max_concurrency == 1
    assert project.directory == str(tmp_path.resolve())


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        (
            "- name: iris\n  handler: sklearn\n  batching: {max_batch_size: 0}\n",
            "shipyard.yaml: iris.batching.max_batch_size: must be >= 1, got 0 (line 3)",
        ),
        (
            "- name: iris\n  handler: sklearn\n  batchng: {}\n",
            "shipyard.yaml: iris.batchng: unknown key; allowed keys: name, handler, model, config, schema, compute, "
            "kind, batching, concurrency, timeout, max_body_size, content_types, grace_period, startup_timeout, "
            "health_check, autoscaling, update_strategy, monitoring (line 3)",
        ),
        (
            "- name: iris\n  handler: sklearn\n  concurrency: {max_concurency: 2}\n",
            "shipyard.yaml: iris.concurrency.max_concurency: unknown key; allowed keys: max_concurrency, "
            "max_queue_length (line 3)",
        ),
        ("- name: iris\n", "shipyard.yaml: iris.handler: required key is missing (line 1)"),
        (
            "- name: Iris\n  handler: sklearn\n",
            "shipyard.yaml: Iris.name: must be lower-case letters, digits and '-', starting with a letter, "
            "got 'Iris' (line 1)",
        ),
        (
            "- name: iris\n  handler: handler.py\n",
            "shipyard.yaml: iris.handler: must be 'file.py:ClassName' or a built-in handler (sklearn, onnx), "
            "got 'handler.py' (line 2)",
        ),
        (
            "- name: iris\n  kind: Realtime\n  handler: sklearn\n",
            "shipyard.yaml: iris: kind must be one of RealtimeAPI, BatchAPI, TrafficSplitter, got 'Realtime' (line 1)",
        ),
        (
            "- name: iris\n  handler: sklearn\n  timeout: soon\n",
            "shipyard.yaml: iris.timeout: must be a duration such as 30s, 250ms or 5m, got 'soon' (line 3)",
        ),
        (
            "- name: iris\n  handler: sklearn\n  max_body_size: lots\n",
            "shipyard.yaml: iris.max_body_size: must be a size such as 10Mi, 512KB or 1Gi, got 'lots' (line 3)",
        ),
        (
            "- name: iris\n  handler: sklearn\n  autoscaling: {min_replicas: 5, max_replicas: 2}\n",
            "shipyard.yaml: iris.autoscaling: min_replicas (5) must be <= max_replicas (2) (line 3)",
        ),
        (
            "- name: iris\n  handler: sklearn\n  update_strategy: {max_surge: 0, max_unavailable: 0}\n",
            "shipyard.yaml: iris.update_strategy: max_surge and max_unavailable cannot both be 0: "
            "the update could never proceed (line 3)",
        ),
        (
            "- name: iris\n  handler: sklearn\n  concurrency: {max_concurrency: many}\n",
            "shipyard.yaml: iris.concurrency.max_concurrency: must be an int, got 'many' (line 3)",
        ),
        (
            "- name: iris\n  handler: sklearn\n  schema: {fields: {a: {type: decimal}}}\n",
            "shipyard.yaml: iris.schema.fields.a.type: must be one of 'float', 'int', 'str' or 'bool', "
            "got 'decimal' (line 3)",
        ),
        (
            "- name: iris\n  handler: sklearn\n  model: models:/iris@\n",
            "shipyard.yaml: iris.model: must be models:/NAME, models:/NAME@ALIAS or models:/NAME:VERSION, "
            "got 'models:/iris@' (line 3)",
        ),
        (
            "- name: split\n  kind: TrafficSplitter\n  apis: [{name: a, weight: 60}]\n",
            "shipyard.yaml: split: weights of the non-shadow APIs must sum to 100, got 60 (line 1)",
        ),
        ("- handler: sklearn\n", "shipyard.yaml: [0].name: required key is missing (line 1)"),
    ],
)
def test_each_problem_is_one_line(
    tmp_path: Path, yaml_text: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert _problems(tmp_path, yaml_text) == [expected]


def test_every_problem_is_reported_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    problems = _problems(
        tmp_path,
        """
        - name: iris
          handler: sklearn
          batching: {max_batch_size: 0, max_wait_ms: -1}
        - name: iris
          handler: sklearn
    """,
    )
    assert problems == [
        "shipyard.yaml: iris.batching.max_batch_size: must be >= 1, got 0 (line 4)",
        "shipyard.yaml: iris.batching.max_wait_ms: must be >= 0, got -1 (line 4)",
    ]


def test_cross_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    problems = _problems(
        tmp_path,
        """
        - name: iris
          handler: sklearn
        - name: iris
          handler: sklearn
        - name: split
          kind: TrafficSplitter
          apis: [{name: ghost, weight: 100}]
    """,
    )
    assert problems == [
        "shipyard.yaml: iris.name: each API name must be unique, got 'iris' twice",
        "shipyard.yaml: split.apis.0.name: must name a RealtimeAPI in this file, got 'ghost' (RealtimeAPIs here: iris)",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "shipyard.yaml: the file is empty; list your APIs, starting with '- name: ...'"),
        (
            "name: iris\n",
            "shipyard.yaml: must be a list of APIs, got a dict; start each API with '- name: ...'",
        ),
        ("- name: [\n", "shipyard.yaml:2:1: not valid YAML: "),
    ],
)
def test_files_that_are_not_a_list_of_apis(
    tmp_path: Path, text: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (problem,) = _problems(tmp_path, text)
    assert problem.startswith(expected)


def test_missing_project(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no shipyard.yaml here"):
        load(tmp_path)
    with pytest.raises(ConfigError, match="no such file or directory"):
        load(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        (
            "- name: x\n  handler: sklearn\n  batching: 3\n",
            "shipyard.yaml: x.batching: must be a mapping, got 3 (line 3)",
        ),
        (
            "- name: x\n  handler: sklearn\n  concurrency: {max_concurrency: 1.5}\n",
            "shipyard.yaml: x.concurrency.max_concurrency: must be a whole number, got 1.5 (line 3)",
        ),
        (
            "- name: x\n  handler: sklearn\n  schema: {fields: {color: {type: int, enum: [red, 2]}}}\n",
            'shipyard.yaml: x.schema.fields.color: enum values of an int field must be whole numbers, got ["red"] '
            "(line 3)",
        ),
        (
            "- name: x\n  handler: sklearn\n  schema: {fields: {}}\n",
            "shipyard.yaml: x.schema.fields: must name at least one field, as `name: {type: float}` (line 3)",
        ),
        (
            "- name: x\n  handler: sklearn\n  schema: {fields: {age: {type: int, min: .nan}}}\n",
            "shipyard.yaml: x.schema.fields.age.min: must be a finite number, got nan (line 3)",
        ),
        (
            "- name: x\n  handler: sklearn\n  schema: {fields: {age: {type: int, max: -.inf}}}\n",
            "shipyard.yaml: x.schema.fields.age.max: must be a finite number, got -inf (line 3)",
        ),
        (
            "- name: x\n  handler: sklearn\n  content_types: []\n",
            "shipyard.yaml: x.content_types: must list at least one media type such as application/json "
            "(or leave it out) (line 3)",
        ),
        (
            "- name: x\n  handler: sklearn\n  content_types: [json, text/*]\n",
            "shipyard.yaml: x.content_types: must be media types such as application/json, text/* or */*, "
            "got 'json' (line 3)",
        ),
    ],
)
def test_messages_say_what_is_allowed_once(
    tmp_path: Path, yaml_text: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert _problems(tmp_path, yaml_text) == [expected]


def test_duplicate_keys_are_refused_with_their_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    problems = _problems(
        tmp_path,
        """\
        - name: x
          handler: sklearn
          name: y
          batching: {max_batch_size: 2, max_batch_size: 4}
        """,
    )
    assert problems == [
        "shipyard.yaml:3: duplicate key 'name' (first on line 1); keep one of them",
        "shipyard.yaml:4: duplicate key 'max_batch_size' (first on line 4); keep one of them",
    ]


def test_describe_errors_words_a_handler_config_like_the_spec() -> None:
    from pydantic import BaseModel, ConfigDict, ValidationError

    from shipyard.spec.loader import describe_errors

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        method: int = 1

    with pytest.raises(ValidationError) as caught:
        Config.model_validate({"method": "x", "metod": 1})
    assert describe_errors(caught.value, Config, "config") == [
        "config.method: must be an int, got 'x'",
        "config.metod: unknown key; allowed keys: method",
    ]


def test_merge_keys_override_as_yaml_says_and_are_no_duplicates(tmp_path: Path) -> None:
    (tmp_path / "shipyard.yaml").write_text(
        textwrap.dedent(
            """\
            - name: a
              handler: sklearn
              concurrency: &c {max_concurrency: 2, max_queue_length: 7}
            - name: b
              handler: sklearn
              concurrency: {<<: *c, max_concurrency: 4}
            - name: c
              handler: sklearn
              concurrency:
                max_concurrency: 5
                <<: [*c]
            """
        )
    )
    a, b, c = load(tmp_path).apis
    assert isinstance(a, RealtimeAPI) and isinstance(b, RealtimeAPI) and isinstance(c, RealtimeAPI)
    assert (b.concurrency.max_concurrency, b.concurrency.max_queue_length) == (4, 7)
    assert (c.concurrency.max_concurrency, c.concurrency.max_queue_length) == (5, 7)


def test_a_key_twice_beside_a_merge_is_a_duplicate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    problems = _problems(
        tmp_path,
        """\
        - name: a
          handler: sklearn
          concurrency: &c {max_concurrency: 2}
        - name: b
          handler: sklearn
          concurrency: {<<: *c, max_queue_length: 1, max_queue_length: 2}
        """,
    )
    assert problems == ["shipyard.yaml:6: duplicate key 'max_queue_length' (first on line 6); keep one of them"]
