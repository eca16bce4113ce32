"""The built-in sklearn and onnx handlers on real models trained here."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pytest
import skops.io
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from shipyard.errors import BadRequest, HandlerLoadError
from shipyard.serving.builtin.onnx import OnnxHandler
from shipyard.serving.builtin.sklearn import SklearnHandler

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SETOSA = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [6.7, 3.0, 5.2, 2.3]


@pytest.fixture(scope="module")
def estimator() -> LogisticRegression:
    data = load_iris()
    return LogisticRegression(max_iter=500).fit(data.data, data.target_names[data.target])


@pytest.fixture
def skops_dir(tmp_path: Path, estimator: LogisticRegression) -> Path:
    skops.io.dump(estimator, tmp_path / "model.skops")
    return tmp_path


def test_every_payload_shape(skops_dir: Path) -> None:
    handler = SklearnHandler({}, str(skops_dir), feature_names=FEATURES)
    record = dict(zip(FEATURES, SETOSA, strict=True))
    assert handler.predict(record) == {"prediction": "setosa"}
    assert handler.predict(SETOSA) == {"prediction": "setosa"}
    assert handler.predict([SETOSA, VIRGINICA]) == {"predictions": ["setosa", "virginica"]}
    assert handler.predict([record]) == {"predictions": ["setosa"]}
    assert handler.predict({"instances": [SETOSA]}) == {"predictions": ["setosa"]}
    assert handler.predict(np.array([SETOSA])).tolist() == ["setosa"]


def test_predict_batch_makes_one_call_and_isolates_bad_payloads(skops_dir: Path) -> None:
    handler = SklearnHandler({"method": "predict_proba"}, str(skops_dir), feature_names=FEATURES)
    calls: list[int] = []
    original = handler._call
    handler._call = lambda matrix: calls.append(len(matrix)) or original(matrix)  # type: ignore[method-assign]
    results = handler.predict_batch([SETOSA, "nonsense", [SETOSA, VIRGINICA]])
    assert calls == [3]
    assert len(results[0]["prediction"]) == 3
    assert isinstance(results[1], BadRequest)
    assert len(results[2]["predictions"]) == 2


def test_bad_rows_are_client_errors(skops_dir: Path) -> None:
    handler = SklearnHandler({}, str(skops_dir))
    with pytest.raises(BadRequest, match="feature order is unknown"):
        handler.predict({"sepal_length": 1})
    with pytest.raises(BadRequest, match="the model rejected the input: X has 2 features"):
        handler.predict([1.0, 2.0])


def test_pickle_needs_an_explicit_choice(tmp_path: Path, estimator: LogisticRegression) -> None:
    joblib.dump(estimator, tmp_path / "model.joblib")
    with pytest.raises(HandlerLoadError, match="pickle-based file and loading it runs code"):
        SklearnHandler({}, str(tmp_path))
    handler = SklearnHandler({"allow_pickle": True}, str(tmp_path))
    assert handler.predict(SETOSA) == {"prediction": "setosa"}


def test_configuration_and_model_file_errors(tmp_path: Path, skops_dir: Path) -> None:
    with pytest.raises(HandlerLoadError, match="config.metod: Extra inputs are not permitted"):
        SklearnHandler({"metod": "predict"}, str(skops_dir))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(HandlerLoadError, match="no model files"):
        SklearnHandler({}, str(empty))
    with pytest.raises(HandlerLoadError, match="needs a model"):
        SklearnHandler({}, None)


def test_onnx_handler(tmp_path: Path, estimator: LogisticRegression) -> None:
    from skl2onnx import to_onnx

    graph = to_onnx(estimator, np.zeros((1, 4), dtype=np.float32), options={"zipmap": False})
    (tmp_path / "model.onnx").write_bytes(graph.SerializeToString())
    handler = OnnxHandler({"outputs": ["label"]}, str(tmp_path), feature_names=FEATURES)
    assert handler.predict(SETOSA) == {"prediction": "setosa"}
    assert handler.predict([SETOSA, VIRGINICA]) == {"predictions": ["setosa", "virginica"]}
    both = OnnxHandler({}, str(tmp_path))
    answer = both.predict(np.array([SETOSA], dtype=np.float32))
    assert set(answer) == {"label", "probabilities"}
    with pytest.raises(BadRequest, match="the ONNX model rejected the input"):
        handler.predict([1.0, 2.0])
