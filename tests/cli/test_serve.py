"""`shipyard serve` refuses what it cannot serve with one clear line and the right exit code."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.serving.conftest import make_project, run_cli


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
            "e.model '../../etc/passwd' is outside the project directory",
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
