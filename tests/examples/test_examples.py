"""The shipped examples, trained and served from a copy: what the README's tour and `make demo` promise."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.serving.conftest import start_server
from tests.support import free_port

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _copy(tmp_path: Path, *names: str) -> Path:
    for name in names:
        shutil.copytree(EXAMPLES / name, tmp_path / name, ignore=shutil.ignore_patterns("model", "__pycache__"))
    return tmp_path


def _train(project: Path) -> None:
    subprocess.run([sys.executable, str(project / "train.py")], check=True, capture_output=True, timeout=120)


def test_the_iris_example_trains_and_the_demo_deploys_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _copy(tmp_path, "iris")
    shutil.copy(EXAMPLES / "demo.py", root / "demo.py")
    _train(root / "iris")
    monkeypatch.setenv("SHIPYARD_CONTROL_PORT", str(free_port()))  # never the user's 7070/8080
    monkeypatch.setenv("SHIPYARD_GATEWAY_PORT", str(free_port()))
    demo = subprocess.run(
        [sys.executable, str(root / "demo.py")], capture_output=True, text=True, timeout=180, cwd=root
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "iris: live at http://127.0.0.1:" in demo.stdout
    assert '{"prediction": "virginica"}' in demo.stdout  # shipyard predict
    assert '200 {"prediction":"virginica"}' in demo.stdout  # curl through the gateway
    assert "422 " in demo.stdout and "daemon stopped" in demo.stdout
    assert '"name":"predictions","shape":[1],"datatype":"BYTES","data":["virginica"]' in demo.stdout
    assert "Traceback" not in demo.stdout + demo.stderr


def test_the_mlp_example_trains_and_answers_json_and_v2(tmp_path: Path) -> None:
    api = "mlp"
    project = _copy(tmp_path, "mlp") / "mlp"
    _train(project)
    server = start_server(project, "--api", api)
    try:
        image = [0, 0, 5, 13, 9, 1, 0, 0] * 8
        answer = server.client.post("/predict", json={"pixels": image}).json()
        assert set(answer) == {"digit", "top"} and len(answer["top"]) == 3
        tensor = {"inputs": [{"name": "pixels", "shape": [64], "datatype": "FP32", "data": image}]}
        outputs = {o["name"]: o for o in server.client.post(f"/v2/models/{api}/infer", json=tensor).json()["outputs"]}
        assert outputs["digit"] == {"name": "digit", "shape": [], "datatype": "INT64", "data": [answer["digit"]]}
        assert outputs["top"]["datatype"] == "BYTES"
        assert outputs["top"]["data"][0].startswith('{"digit":')  # JSON text, never a Python repr
        bad = server.client.post("/predict", json={"pixels": [1, 2]})
        assert bad.status_code == 400 and "expected 64 pixel values" in bad.json()["error"]["message"]
    finally:
        assert server.stop() == 0
