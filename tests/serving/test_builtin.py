"""The built-in sklearn and onnx handlers on real models trained here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import skops.io
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from tests.serving.conftest import project_with_a_custom_step

from shipyard.errors import BadRequest, FeatureMismatch, HandlerLoadError
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
    with pytest.raises(BadRequest, match="the row has 2 values; this model needs 4 features"):
        handler.predict([1.0, 2.0])
    with pytest.raises(BadRequest, match="row 1 has 2 values; this model needs 4 features"):
        handler.predict([SETOSA, [1.0, 2.0]])
    with pytest.raises(BadRequest, match="each row needs 4 feature values, got 2"):
        handler.predict(np.array([[1.0, 2.0]]))
    with pytest.raises(BadRequest, match="the model rejected the input"):
        handler.predict([1.0, 2.0, 3.0, "wide"])


def test_a_row_of_the_wrong_width_fails_only_its_own_payload(skops_dir: Path) -> None:
    handler = SklearnHandler({"method": "predict_proba"}, str(skops_dir), feature_names=FEATURES)
    results = handler.predict_batch([SETOSA, [5.1, 3.5], VIRGINICA, [SETOSA, [1.0]]])
    assert len(results[0]["prediction"]) == 3 and len(results[2]["prediction"]) == 3
    assert isinstance(results[1], BadRequest) and "has 2 values; this model needs 4" in results[1].message
    assert isinstance(results[3], BadRequest) and "row 1 has 1 value;" in results[3].message


def test_a_value_the_estimator_rejects_fails_only_its_own_payload(skops_dir: Path) -> None:
    handler = SklearnHandler({}, str(skops_dir), feature_names=FEATURES)
    results = handler.predict_batch([SETOSA, [1.0, 2.0, 3.0, "wide"], VIRGINICA])
    assert results[0] == {"prediction": "setosa"} and results[2] == {"prediction": "virginica"}
    assert isinstance(results[1], BadRequest) and "the model rejected the input" in results[1].message


def test_a_dict_valued_feature_is_a_client_error_alone_and_in_a_batch(skops_dir: Path, tmp_path: Path) -> None:
    dict_valued = [[{"a": 1}, 1.0, 2.0, 3.0]]
    sklearn = SklearnHandler({}, str(skops_dir), feature_names=FEATURES)
    with pytest.raises(BadRequest, match="the model rejected the input"):
        sklearn.predict(dict_valued)
    with pytest.raises(BadRequest, match="the model rejected the input"):
        sklearn.predict(dict(zip(FEATURES, [{"a": 1}, 1.0, 2.0, 3.0], strict=True)))
    results = sklearn.predict_batch([SETOSA, dict_valued, [VIRGINICA]])
    assert results[0] == {"prediction": "setosa"} and results[2] == {"predictions": ["virginica"]}
    assert isinstance(results[1], BadRequest) and "the model rejected the input" in results[1].message
    onnx = _onnx_handler(tmp_path, sklearn.estimator)
    with pytest.raises(BadRequest, match="the ONNX model rejected the input"):
        onnx.predict(dict_valued)  # onnx has no predict_batch: a batch is predicted payload by payload


def test_anything_a_lone_payload_raises_stays_its_own_in_a_batch(skops_dir: Path) -> None:
    sklearn = SklearnHandler({}, str(skops_dir), feature_names=FEATURES)
    original = sklearn._call

    def picky(matrix: np.ndarray) -> np.ndarray:
        if (matrix == 9.0).any():
            raise KeyError("a custom step chokes on 9")
        return original(matrix)  # type: ignore[no-any-return]

    sklearn._call = picky  # type: ignore[method-assign]
    results = sklearn.predict_batch([SETOSA, [9.0, 9.0, 9.0, 9.0], VIRGINICA])
    assert results[0] == {"prediction": "setosa"} and results[2] == {"prediction": "virginica"}
    assert isinstance(results[1], KeyError)  # the engine logs it and answers that request alone with 500


def _onnx_handler(folder: Path, estimator: Any) -> OnnxHandler:
    from skl2onnx import to_onnx

    graph = to_onnx(estimator, np.zeros((1, 4), dtype=np.float32), options={"zipmap": False})
    (folder / "model.onnx").write_bytes(graph.SerializeToString())
    return OnnxHandler({"outputs": ["label"]}, str(folder), feature_names=FEATURES)


def test_feature_columns_from_the_v2_protocol(skops_dir: Path) -> None:
    handler = SklearnHandler({}, str(skops_dir), feature_names=FEATURES)
    columns = {name: np.array([s, v]) for name, s, v in zip(FEATURES, SETOSA, VIRGINICA, strict=True)}
    assert handler.predict(columns).tolist() == ["setosa", "virginica"]
    with pytest.raises(BadRequest, match="lack the feature"):
        handler.predict({"sepal_length": np.array([1.0])})


def test_pickle_needs_an_explicit_choice(tmp_path: Path, estimator: LogisticRegression) -> None:
    joblib.dump(estimator, tmp_path / "model.joblib")
    with pytest.raises(HandlerLoadError, match="pickle-based file and loading it runs code"):
        SklearnHandler({}, str(tmp_path))
    handler = SklearnHandler({"allow_pickle": True}, str(tmp_path))
    assert handler.predict(SETOSA) == {"prediction": "setosa"}


class _Payload:
    """Unpickling this runs code: it writes a marker file. No test may ever see the marker."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (str(self.marker), "unpickled"))  # type: ignore[return-value]


@pytest.mark.parametrize("name", ["model.bin", "model.skops", "weights", "model.npz"])
@pytest.mark.parametrize("allow_pickle", [False, True])
def test_a_pickle_under_another_name_is_never_unpickled(tmp_path: Path, name: str, allow_pickle: bool) -> None:
    marker = tmp_path / "unpickled.txt"
    model = tmp_path / "model"
    model.mkdir()
    joblib.dump(_Payload(marker), model / name)
    for path in (model / name, model):
        with pytest.raises(HandlerLoadError) as caught:
            SklearnHandler({"allow_pickle": allow_pickle}, str(path))
        assert not marker.exists()
        message = caught.value.message
        if path.is_dir():
            assert "no model files (.skops, .joblib, .pkl, .pickle)" in message or "holds a pickle" in message
        else:
            assert "pickle" in message, message
    assert not marker.exists()


def test_a_file_that_is_no_model_is_refused_clearly(tmp_path: Path) -> None:
    (tmp_path / "handlers.py").write_text("class Handler: ...\n")
    with pytest.raises(HandlerLoadError, match="loads .skops, .joblib, .pkl, .pickle files, got 'handlers.py'"):
        SklearnHandler({}, str(tmp_path / "handlers.py"))
    (tmp_path / "model.skops").write_text("not a zip")
    with pytest.raises(HandlerLoadError, match="'model.skops' is not a skops file"):
        SklearnHandler({}, str(tmp_path / "model.skops"))


def test_problems_are_found_without_loading_the_model(tmp_path: Path, skops_dir: Path) -> None:
    assert SklearnHandler.check({}, str(skops_dir)) == []
    assert SklearnHandler.check({"method": "predictt"}, str(skops_dir)) == [
        "config.method: must be one of 'predict', 'predict_proba', 'predict_log_proba', 'decision_function' "
        "or 'transform', got 'predictt'"
    ]
    assert SklearnHandler.check({"method": "predictt"}, None, check_model=False) != []
    assert SklearnHandler.check({}, None, check_model=False) == []
    assert SklearnHandler.check({}, None) == [
        "model: handler 'sklearn' needs a model: set `model:` to a .skops, .joblib, .pkl, .pickle file or a "
        "folder with one"
    ]
    assert OnnxHandler.check({"nope": 1}, None) == [
        "config.nope: unknown key; allowed keys: outputs, features, intra_op_threads"
    ]
    assert OnnxHandler.check({}, None)[0].startswith("model: handler 'onnx' needs a model")


def test_configuration_and_model_file_errors(tmp_path: Path, skops_dir: Path) -> None:
    with pytest.raises(HandlerLoadError, match="config.metod: unknown key; allowed keys: method, features"):
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
    with pytest.raises(BadRequest, match="the row has 2 values; this model needs 4 features"):
        handler.predict([1.0, 2.0])
    with pytest.raises(BadRequest, match="the ONNX model rejected the input"):
        handler.predict([1.0, 2.0, 3.0, "wide"])
    assert both.tensor_inputs() == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
    assert both.tensor_outputs() == [
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
    ]


def test_tensor_metadata_of_the_sklearn_handler(skops_dir: Path) -> None:
    assert SklearnHandler({}, str(skops_dir)).tensor_outputs() == [
        {"name": "predictions", "datatype": "BYTES", "shape": [-1]}
    ]
    proba = SklearnHandler({"method": "predict_proba"}, str(skops_dir))
    assert proba.tensor_outputs() == [{"name": "predictions", "datatype": "FP64", "shape": [-1, 3]}]
    assert proba.tensor_inputs() == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]


@pytest.fixture(scope="module")
def named_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LogisticRegression, list[str]]:
    """An estimator fitted with feature names in another order than the schema's (as fitting on a DataFrame
    whose columns are in that order records them)."""
    data = load_iris()
    order = [3, 0, 2, 1]
    estimator = LogisticRegression(max_iter=500).fit(data.data[:, order], data.target_names[data.target])
    names = [FEATURES[i] for i in order]
    estimator.feature_names_in_ = np.array(names, dtype=object)
    folder = tmp_path_factory.mktemp("named")
    skops.io.dump(estimator, folder / "model.skops")
    return folder, estimator, names


def test_records_go_to_an_estimator_with_feature_names_by_name(
    named_model: tuple[Path, LogisticRegression, list[str]],
) -> None:
    folder, estimator, names = named_model
    handler = SklearnHandler({}, str(folder), feature_names=FEATURES)  # the schema lists them in another order
    data = load_iris()
    records = [dict(zip(FEATURES, row.tolist(), strict=True)) for row in data.data]
    answered = handler.predict(records)["predictions"]  # pytest turns sklearn's feature-name warning into an error
    assert answered == estimator.predict(data.data[:, [FEATURES.index(n) for n in names]]).tolist()
    assert handler.features == names  # rows and tensors are read in the estimator's order


@pytest.mark.parametrize(
    ("config", "schema", "problem"),
    [
        ({}, [*FEATURES[:3], "petal_wdth"], "the schema's fields differ (missing petal_width; not features of "),
        ({"features": FEATURES[:3]}, None, "config.features differ (missing petal_width)"),
    ],
)
def test_names_the_estimator_was_not_fitted_with_are_refused(
    named_model: tuple[Path, LogisticRegression, list[str]],
    config: dict[str, Any],
    schema: list[str] | None,
    problem: str,
) -> None:
    with pytest.raises(FeatureMismatch) as raised:
        SklearnHandler(config, str(named_model[0]), feature_names=schema)
    assert problem in raised.value.message
    assert "fitted with the features petal_width, sepal_length, petal_length, sepal_width" in raised.value.message


def test_types_of_the_project_load_once_trusted(
    tmp_path: Path, custom_step_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from shipyard.serving.engine import State
    from shipyard.serving.replica import build_engine
    from shipyard.spec import RealtimeAPI, load

    project_dir = project_with_a_custom_step(tmp_path / "p", custom_step_model, "{trusted_types: [mytf.Double]}")
    monkeypatch.setattr(sys, "path", list(sys.path))  # the engine puts the project first; undo it after
    try:
        project = load(project_dir)
        api = project.apis[0]
        assert isinstance(api, RealtimeAPI)
        engine = build_engine(project, api)
        engine.load()  # from another working directory: mytf imports because the project is on sys.path
        assert engine.state is State.ready, engine.load_error
    finally:
        sys.modules.pop("mytf", None)


def test_a_damaged_skops_archive_is_one_line_before_loading(tmp_path: Path) -> None:
    import zipfile

    with zipfile.ZipFile(tmp_path / "model.skops", "w") as archive:
        archive.writestr("weights.npy", b"not a skops model")
    (problem,) = SklearnHandler.check({}, str(tmp_path))
    assert problem.startswith("model: model.skops cannot be read as a skops file (")
    assert problem.endswith("); save it again with skops.io.dump")
