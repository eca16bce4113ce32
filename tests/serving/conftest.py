"""Factories for test projects and for real `shipyard serve` processes on free loopback ports."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from tests.support import free_port

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures.py"
REPO = Path(__file__).resolve().parents[2]


def make_project(root: Path, spec: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "shipyard.yaml").write_text(textwrap.dedent(spec))
    shutil.copy(FIXTURES, root / "handlers.py")
    return root


IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS_SCHEMA = "\n".join(
    ["  schema:", "    fields:", *(f"      {name}: {{type: float, min: 0}}" for name in IRIS_FEATURES)]
)


def save_iris_models(model_dir: Path) -> None:
    """A logistic regression over iris saved as model.skops, and the same model as model.onnx."""
    import numpy as np
    import skops.io
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris()
    estimator = LogisticRegression(max_iter=500).fit(data.data, data.target_names[data.target])
    (model_dir / "skops").mkdir(parents=True, exist_ok=True)
    (model_dir / "onnx").mkdir(parents=True, exist_ok=True)
    skops.io.dump(estimator, model_dir / "skops" / "model.skops")
    graph = to_onnx(estimator, np.zeros((1, 4), dtype=np.float32), options={"zipmap": False})
    (model_dir / "onnx" / "model.onnx").write_bytes(graph.SerializeToString())


@pytest.fixture(scope="session")
def iris_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Trained once per session: `skops/model.skops` and `onnx/model.onnx`; copy them into a project."""
    folder = tmp_path_factory.mktemp("iris-models")
    save_iris_models(folder)
    return folder


CUSTOM_STEP = """
from sklearn.base import BaseEstimator, TransformerMixin


class Double(TransformerMixin, BaseEstimator):
    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X * 2
"""
DUMP_PIPELINE = """
import skops.io
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from mytf import Double

data = load_iris()
pipeline = make_pipeline(Double(), LogisticRegression(max_iter=500)).fit(data.data, data.target_names[data.target])
skops.io.dump(pipeline, "model.skops")
"""


@pytest.fixture(scope="session")
def custom_step_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Made once per session: `mytf.py` and `model.skops`, a pipeline with a step of that module."""
    folder = tmp_path_factory.mktemp("custom-step")
    (folder / "mytf.py").write_text(CUSTOM_STEP)
    subprocess.run([sys.executable, "-c", DUMP_PIPELINE], cwd=folder, check=True)
    return folder


def project_with_a_custom_step(folder: Path, model: Path, config: str) -> Path:
    """A project holding `custom_step_model`'s files, served by the sklearn built-in with `config`."""
    shutil.copytree(model, folder)
    (folder / "shipyard.yaml").write_text(f"- name: p\n  handler: sklearn\n  model: model.skops\n  config: {config}\n")
    return folder


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def output(self) -> str:
        return self.log.read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        finally:
            self.client.close()


def start_server(project: Path, *args: str, wait: str | None = "/readyz", timeout: float = 60) -> Server:
    port = free_port()
    log = project / f"serve-{port}.log"
    command = [sys.executable, "-m", "shipyard", "serve", str(project), "--port", str(port), *args]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())
    server = Server(process, f"http://127.0.0.1:{port}", log)
    if wait:
        _wait_for(server, wait, timeout)
    return server


def _wait_for(server: Server, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"server exited with {server.process.returncode}:\n{server.output()}")
        try:
            if server.client.get(path, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    server.stop(signal.SIGKILL)
    raise AssertionError(f"server did not answer {path} within {timeout}s:\n{server.output()}")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start `shipyard serve` for a spec; every server is stopped when the test ends."""
    servers: list[Server] = []

    def factory(
        spec: str, *args: str, wait: str | None = "/readyz", name: str = "project", models: Path | None = None
    ) -> Server:
        project = make_project(tmp_path / name, spec)
        if models is not None:
            shutil.copytree(models, project / "model", dirs_exist_ok=True)
        server = start_server(project, *args, wait=wait)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
        server.client.close()


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shipyard", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )
