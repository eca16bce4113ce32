"""A served API whose model is a registry reference: resolved, verified, and shown by GET /."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import skops.io
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from tests.serving.conftest import Server, make_project, run_cli

from shipyard.registry import promote_model, register_model

Serve = Callable[..., Server]
SPEC = """
- name: iris
  handler: sklearn
  model: models:/iris@production
"""


def _register(tmp_path: Path) -> tuple[int, str]:
    data = load_iris()
    folder = tmp_path / "trained"
    folder.mkdir()
    skops.io.dump(LogisticRegression(max_iter=300).fit(data.data, data.target), folder / "model.skops")
    version = register_model("iris", folder, metrics={"accuracy": 0.97})
    promote_model(f"iris:{version.version}", "production", reason="first release")
    return version.version, version.digest


def test_a_served_api_follows_an_alias(tmp_path: Path, serve: Serve) -> None:
    version, digest = _register(tmp_path)
    server = serve(SPEC)
    described = server.client.get("/").json()["model"]
    assert described["source"] == "models:/iris@production"
    assert (described["name"], described["version"], described["digest"]) == ("iris", version, digest)
    assert server.client.post("/predict", json=[5.1, 3.5, 1.4, 0.2]).json() == {"prediction": 0}
    assert server.client.get("/v2/models/iris").json()["versions"] == [str(version)]
    assert server.client.get(f"/v2/models/iris/versions/{version}/ready").status_code == 200


def test_a_missing_alias_or_a_tampered_blob_is_refused_before_serving(tmp_path: Path, shipyard_home: Path) -> None:
    project = make_project(tmp_path / "p", SPEC)
    missing = run_cli("serve", str(project), "--port", "0")
    assert missing.returncode == 1
    assert "iris" in missing.stderr and "Traceback" not in missing.stderr
    _register(tmp_path)
    for blob in (shipyard_home / "artifacts").rglob("*"):
        if blob.is_file():
            blob.write_bytes(b"tampered")
    for cached in (shipyard_home / "models").rglob("*.skops"):
        cached.write_bytes(b"tampered")
    tampered = run_cli("serve", str(project), "--port", "0")
    assert tampered.returncode == 1
    assert "sha256" in tampered.stderr and "Traceback" not in tampered.stderr
