"""`shipyard serve` refuses what it cannot serve with one clear line and the right exit code."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from tests.serving.conftest import custom_step_model, iris_models, make_project, project_with_a_custom_step, run_cli
from tests.support import free_port

__all__ = ["custom_step_model", "iris_models"]  # session fixtures, shared with tests/serving


def _serve(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("serve", str(project), "--port", "0", *args)


@pytest.mark.parametrize(
    ("spec", "code", "message"),
    [
        (
            "- name: e\n  handler: handlers.py:Echo\n  batching: {max_batch_size: 0}\n",
            2,
            "shipyard.yaml: e.batching.max_batch_size: must be >= 1, got 0 (line 3)",
        ),
        ("- name: e\n  handler: nothere.py:Echo\n", 2, "file 'nothere.py' does not exist"),
        (
            "- name: e\n  handler: handlers.py:Ech\n",
            2,
            "handlers.py has no class 'Ech'; classes defined there:",
        ),
        (
            "- name: e\n  handler: ../handlers.py:Echo\n",
            2,
            "handler file '../handlers.py' is outside the project",
        ),
        (
            "- name: e\n  handler: handlers.py:Echo\n  model: ../../etc/passwd\n",
            2,
            "shipyard.yaml: e.model: '../../etc/passwd' is outside the project directory",
        ),
        (
            "- name: e\n  handler: handlers.py:Echo\n  model: model/\n",
            2,
            "e.model: 'model/' does not exist in",
        ),
        (
            "- name: e\n  handler: handlers.py:BrokenInit\n",
            1,
            "BrokenInit.__init__ raised ValueError: cannot open weights.bin",
        ),
        ("- name: e\n  handler: handlers.py:ExitInInit\n", 1, "ExitInInit.__init__ raised SystemExit: bye"),
        ("- name: e\n  handler: handlers.py:InterruptInInit\n", 1, "InterruptInInit.__init__ raised KeyboardInterrupt"),
        (
            "- name: a\n  handler: handlers.py:Echo\n- name: b\n  handler: handlers.py:Echo\n",
            2,
            "pick an API with --api NAME; RealtimeAPIs here: a, b",
        ),
    ],
)
def test_refusals(tmp_path: Path, spec: str, code: int, message: str) -> None:
    result = _serve(make_project(tmp_path / "p", spec))
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_handler_file_that_exits_while_imported_is_one_line(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", "- name: e\n  handler: bye.py:Bye\n")
    (project / "bye.py").write_text("import sys\n\nsys.exit(3)\n")
    result = _serve(project)
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["error: handler 'bye.py:Bye': importing bye.py failed: SystemExit: 3"]


def test_a_project_without_a_realtime_api_says_how_batch_apis_run(tmp_path: Path) -> None:
    result = _serve(make_project(tmp_path / "p", "- name: b\n  kind: BatchAPI\n  handler: handlers.py:Echo\n"))
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.endswith(
        "shipyard.yaml: has no RealtimeAPI to serve; BatchAPIs (b) run as jobs: shipyard jobs submit NAME "
        "--input ... --output ..."
    )


def test_unknown_api_name(tmp_path: Path) -> None:
    result = _serve(make_project(tmp_path / "p", "- name: a\n  handler: handlers.py:Echo\n"), "--api", "b")
    assert result.returncode == 2
    assert "no RealtimeAPI named 'b'; RealtimeAPIs here: a" in result.stderr


def test_bad_arguments_are_usage_errors(tmp_path: Path) -> None:
    result = run_cli("serve", str(tmp_path), "--port", "99999")
    assert result.returncode == 2
    assert "99999 is not in the range 0<=x<=65535" in result.stderr


def test_validate(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", "- name: a\n  handler: handlers.py:Echo\n")
    result = run_cli("validate", str(project))
    assert result.returncode == 0
    assert "ok — a (RealtimeAPI)" in result.stdout
    (project / "shipyard.yaml").write_text(textwrap.dedent("- name: a\n  handler: handlers.py:Nope\n"))
    assert run_cli("validate", str(project)).returncode == 2


SKLEARN_PROBLEMS = [
    (
        "- name: x\n  handler: sklearn\n  model: model/skops/\n  config: {method: predictt}\n",
        "shipyard.yaml: x.config.method: must be one of 'predict', 'predict_proba', 'predict_log_proba', "
        "'decision_function' or 'transform', got 'predictt'",
    ),
    (
        "- name: x\n  handler: onnx\n  model: model/onnx/\n  config: {nope: 1}\n",
        "shipyard.yaml: x.config.nope: unknown key; allowed keys: outputs, features, intra_op_threads",
    ),
    ("- name: x\n  handler: onnx\n", "shipyard.yaml: x.model: handler 'onnx' needs a model"),
    (
        "- name: x\n  handler: sklearn\n  model: ../outside/\n",
        "shipyard.yaml: x.model: '../outside/' is outside the project directory",
    ),
    (
        "- name: x\n  handler: sklearn\n  model: model/skops/\n  schema: {fields: {c: {type: int, enum: [red]}}}\n",
        'shipyard.yaml: x.schema.fields.c: enum values of an int field must be whole numbers, got ["red"]',
    ),
    ("- name: x\n  handler: sklearn\n  model: model/skops/\n  content_types: []\n", "x.content_types: must list"),
    ("- name: x\n  handler: sklearn\n  model: model/skops/\n  content_types: [json]\n", "got 'json'"),
    (
        "- name: x\n  handler: sklearn\n  model: handlers.py\n",
        "shipyard.yaml: x.model: handler 'sklearn' loads .skops, .joblib, .pkl, .pickle files, got 'handlers.py'",
    ),
    (
        "- name: x\n  handler: sklearn\n  model: model/skops/\n  name: y\n",
        "shipyard.yaml:4: duplicate key 'name' (first on line 1)",
    ),
]


CASES = [("validate", *problem) for problem in SKLEARN_PROBLEMS] + [
    ("serve", *SKLEARN_PROBLEMS[index])
    for index in (0, 2, 7)  # the same checks run before serve binds
]


@pytest.mark.parametrize(("command", "spec", "message"), CASES)
def test_handler_and_config_problems_are_refused_before_serving(
    tmp_path: Path, iris_models: Path, command: str, spec: str, message: str
) -> None:
    project = make_project(tmp_path / "p", spec)
    shutil.copytree(iris_models, project / "model")
    (tmp_path / "outside").mkdir()
    result = run_cli(command, str(project), *(["--port", str(free_port())] if command == "serve" else []))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0]


def test_validate_accepts_a_servable_project(tmp_path: Path, iris_models: Path) -> None:
    project = make_project(tmp_path / "p", "- name: x\n  handler: sklearn\n  model: model/skops/\n")
    shutil.copytree(iris_models, project / "model")
    result = run_cli("validate", str(project))
    assert result.returncode == 0, result.stderr
    assert "ok — x (RealtimeAPI)" in result.stdout


def test_a_port_in_use_or_an_address_not_here_is_one_line_and_exit_1(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", "- name: e\n  handler: handlers.py:SlowLoad\n  config: {load_seconds: 30}\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _serve_on(project, "--port", str(port))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: port {port} on 127.0.0.1 is in use (Address already in use); stop what listens there or pick "
        "another --port"
    ]
    elsewhere = _serve_on(project, "--host", "192.0.2.1", "--port", str(free_port()))
    assert elsewhere.returncode == 1
    assert elsewhere.stderr.startswith("error: cannot listen on 192.0.2.1:")
    assert "Traceback" not in elsewhere.stderr


def _serve_on(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("--log-level", "warning", "serve", str(project), *args, timeout=20)


def test_port_0_logs_the_port_it_bound(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", "- name: e\n  handler: handlers.py:Echo\n")
    command = [sys.executable, "-m", "shipyard", "serve", str(project), "--port", "0"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        line = next(line for line in process.stderr if "serving e on" in line)
        port = int(line.rsplit(":", 1)[1])
        assert port != 0
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
    finally:
        process.terminate()
        process.wait(30)
        if process.stderr is not None:
            process.stderr.close()


def test_a_schema_that_names_other_features_than_the_estimator_is_exit_2(tmp_path: Path) -> None:
    import numpy as np
    import skops.io
    from sklearn.linear_model import LogisticRegression

    estimator = LogisticRegression().fit(np.array([[0.0, 1.0], [1.0, 0.0]]), [0, 1])
    estimator.feature_names_in_ = np.array(["height", "width"], dtype=object)  # as fitting on a DataFrame does
    project = make_project(
        tmp_path / "p",
        "- name: m\n  handler: sklearn\n  model: model.skops\n"
        "  schema: {fields: {height: {type: float}, widht: {type: float}}}\n",
    )
    skops.io.dump(estimator, project / "model.skops")
    result = _serve(project)
    assert result.returncode == 2, result.stderr
    assert "differ (missing width; not features of the estimator: widht)" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_skops_file_with_untrusted_types_is_refused_before_serving(tmp_path: Path, custom_step_model: Path) -> None:
    project = project_with_a_custom_step(tmp_path / "p", custom_step_model, "{}")
    result = run_cli("validate", str(project))  # serve runs the same check before it binds
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and line.endswith(
        "shipyard.yaml: p.model: model.skops contains types skops does not trust: mytf.Double; list them "
        "under config.trusted_types if you trust this file"
    )
