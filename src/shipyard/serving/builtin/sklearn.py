"""`handler: sklearn` — a scikit-learn estimator saved with skops (safe) or joblib/pickle (opt-in)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shipyard.errors import BadRequest, FeatureMismatch, HandlerLoadError, ShipyardError
from shipyard.serving.builtin.model_file import (
    ZIP_MAGIC,
    ModelFileProblem,
    find_model_file,
    looks_like_pickle,
    read_head,
)
from shipyard.serving.builtin.rows import Rows, check_width, from_predictions, stack, to_rows
from shipyard.serving.tensors import datatype_of
from shipyard.spec.loader import describe_errors

log = logging.getLogger("shipyard.handler.sklearn")

SAFE_SUFFIXES = (".skops",)
PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")


class SklearnConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["predict", "predict_proba", "predict_log_proba", "decision_function", "transform"] = "predict"
    """Which estimator method answers a request."""
    features: list[str] | None = None
    """Feature order for records of an estimator fitted on arrays; defaults to the schema's field order. An
    estimator fitted with feature names (feature_names_in_) takes records by those names."""
    allow_pickle: bool = False
    """Load .joblib/.pkl/.pickle files. Unpickling runs code from the file: only for files you trust."""
    trusted_types: list[str] = Field(default_factory=list)
    """Extra types a .skops file may contain beyond skops' defaults."""


def model_file(config: SklearnConfig, model_path: str | None) -> Path:
    """The file to load, refused unless it is a real .skops archive or a pickle the config allows."""
    file = find_model_file(model_path, SAFE_SUFFIXES + PICKLE_SUFFIXES, "sklearn")
    head = read_head(file)
    if file.suffix in SAFE_SUFFIXES:
        if looks_like_pickle(head):
            raise ModelFileProblem(
                f"{file.name!r} is named .skops but holds a pickle, which is never loaded under another name; "
                "save the model with skops.io.dump"
            )
        if not head.startswith(ZIP_MAGIC):
            raise ModelFileProblem(
                f"{file.name!r} is not a skops file (a zip archive); save the model with skops.io.dump"
            )
        untrusted = untrusted_types(file, config.trusted_types)
        if untrusted:
            raise ModelFileProblem(
                f"{file.name} contains types skops does not trust: {', '.join(untrusted)}; "
                "list them under config.trusted_types if you trust this file"
            )
    elif not config.allow_pickle:
        raise ModelFileProblem(
            f"{file.name!r} is a pickle-based file and loading it runs code from the file; "
            "save the model with skops (.skops), or set config.allow_pickle: true if you trust it"
        )
    return file


def untrusted_types(file: Path, trusted: list[str]) -> list[str]:
    """The types in a .skops file that neither skops nor config.trusted_types trust (read without loading)."""
    import skops.io

    try:
        found = skops.io.get_untrusted_types(file=file)
    except Exception as exc:  # a damaged archive: zipfile, json and skops each raise their own
        raise ModelFileProblem(
            f"{file.name} cannot be read as a skops file ({exc}); save it again with skops.io.dump"
        ) from None
    return [name for name in found if name not in trusted]


class SklearnHandler:
    def __init__(self, config: dict[str, Any], model_path: str | None, feature_names: list[str] | None = None):
        problems = self.check(config, model_path, check_model=False)
        if problems:
            raise HandlerLoadError(f"handler 'sklearn': {'; '.join(problems)}")
        self.config = SklearnConfig.model_validate(config)
        try:
            file = model_file(self.config, model_path)
        except ModelFileProblem as exc:
            raise HandlerLoadError(f"handler 'sklearn': model: {exc}") from None
        self.estimator = self._load(file)
        self.features = self._feature_order(feature_names)
        width = getattr(self.estimator, "n_features_in_", None)
        self.width: int | None = int(width) if isinstance(width, int | np.integer) else None
        if not callable(getattr(self.estimator, self.config.method, None)):
            raise HandlerLoadError(
                f"handler 'sklearn': {type(self.estimator).__name__} has no method {self.config.method!r}; "
                "choose another config.method"
            )
        self._call = getattr(self.estimator, self.config.method)

    def _feature_order(self, schema_fields: Sequence[str] | None) -> list[str] | None:
        """Which feature each column of a row means: the estimator's own names when it was fitted with them
        (the schema and config.features must then name the same features, in any order), else
        config.features, else the schema's order."""
        fitted = getattr(self.estimator, "feature_names_in_", None)
        if fitted is None:
            return self.config.features or (list(schema_fields) if schema_fields else None)
        names = [str(name) for name in fitted]
        for what, given in (("the schema's fields", schema_fields), ("config.features", self.config.features)):
            if given is not None and set(given) != set(names):
                raise FeatureMismatch(_mismatch(what, given, names))
        # rows go in as arrays in the estimator's own order, so sklearn's check of the names has nothing to say
        warnings.filterwarnings("ignore", "X does not have valid feature names", UserWarning, r"sklearn\.")
        return names

    @staticmethod
    def check(config: dict[str, Any], model_path: str | None, check_model: bool = True) -> list[str]:
        """What can be refused without loading the model, one `key: problem` line each."""
        try:
            parsed = SklearnConfig.model_validate(config)
        except ValidationError as exc:
            return describe_errors(exc, SklearnConfig, "config")
        if not check_model:
            return []
        try:
            model_file(parsed, model_path)
        except ModelFileProblem as exc:
            return [f"model: {exc}"]
        return []

    def _load(self, file: Path) -> Any:
        if file.suffix in SAFE_SUFFIXES:
            import skops.io

            # model_file() has refused a file holding types that neither skops nor config.trusted_types trust
            return skops.io.load(file, trusted=self.config.trusted_types or None)
        assert self.config.allow_pickle and file.suffix in PICKLE_SUFFIXES, "model_file() lets no other file through"
        import joblib

        return joblib.load(file)

    def predict(self, payload: Any) -> Any:
        rows = self._rows(payload)
        return from_predictions(self._run(rows.matrix), rows)

    def predict_batch(self, payloads: list[Any]) -> list[Any]:
        """Every payload's rows in one estimator call; a malformed payload fails only its own request."""
        parsed: list[Rows | ShipyardError] = []
        for payload in payloads:
            try:
                parsed.append(self._rows(payload))
            except ShipyardError as exc:
                parsed.append(exc)
        good = [rows for rows in parsed if isinstance(rows, Rows)]
        try:
            predictions = self._run(stack(good)) if good else []
        except Exception:
            if len(good) == 1:
                raise
            # one payload the estimator rejects (a text value, say) must not sink the others: answer each alone
            return [rows if isinstance(rows, ShipyardError) else self._predict_rows(rows) for rows in parsed]
        results: list[Any] = []
        offset = 0
        for rows in parsed:
            if isinstance(rows, ShipyardError):
                results.append(rows)
                continue
            results.append(from_predictions(predictions[offset : offset + len(rows)], rows))
            offset += len(rows)
        return results

    def _rows(self, payload: Any) -> Rows:
        rows = to_rows(payload, self.features)
        check_width(rows, self.width)
        return rows

    def _predict_rows(self, rows: Rows) -> Any:
        """One payload's own answer, or its own error (the engine logs one that is not a ShipyardError)."""
        try:
            return from_predictions(self._run(rows.matrix), rows)
        except Exception as exc:
            return exc

    def tensor_inputs(self) -> list[dict[str, Any]]:
        """OIP v2 metadata without a schema: one [n, features] tensor (any name will do)."""
        return [{"name": "input-0", "datatype": "FP64", "shape": [-1, self.width if self.width else -1]}]

    def tensor_outputs(self) -> list[dict[str, Any]]:
        """OIP v2 metadata: the one output, named `predictions`, as config.method makes it."""
        classes = getattr(self.estimator, "classes_", None)
        method = self.config.method
        if method == "predict":
            datatype = datatype_of(np.asarray(classes).dtype) if classes is not None else "FP64"
            shape = [-1]
        elif method in ("predict_proba", "predict_log_proba") and classes is not None:
            datatype, shape = "FP64", [-1, len(classes)]
        elif method == "decision_function" and classes is not None:
            datatype, shape = "FP64", [-1] if len(classes) == 2 else [-1, len(classes)]
        else:
            datatype, shape = "FP64", [-1, -1]
        return [{"name": "predictions", "datatype": datatype or "BYTES", "shape": shape}]

    def predict_matrix(self, matrix: np.ndarray) -> list[Any]:
        """Batch jobs' columnar path: for records whose feature values are `matrix`'s rows, the value of
        each record's `{"prediction": value}` from predict_batch, from the same single estimator call."""
        predictions = self._run(matrix)
        return predictions.tolist() if isinstance(predictions, np.ndarray) else list(predictions)

    def _run(self, matrix: Any) -> Any:
        try:
            return self._call(np.asarray(matrix))
        except (ValueError, TypeError) as exc:  # sklearn's input validation: wrong width, non-numeric values
            raise BadRequest(f"the model rejected the input: {exc}") from exc


def _mismatch(what: str, given: Sequence[str], fitted: list[str]) -> str:
    missing = [name for name in fitted if name not in given]
    unknown = [name for name in given if name not in fitted]
    parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
        [f"not features of the estimator: {', '.join(unknown)}"] if unknown else []
    )
    return (
        f"handler 'sklearn': the estimator was fitted with the features {', '.join(fitted)} (feature_names_in_), "
        f"but {what} differ ({'; '.join(parts)}); name them after the estimator's features, in any order"
    )
