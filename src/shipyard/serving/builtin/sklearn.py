"""`handler: sklearn` — a scikit-learn estimator saved with skops (safe) or joblib/pickle (opt-in)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shipyard.errors import BadRequest, HandlerLoadError, ShipyardError
from shipyard.serving.builtin.rows import Rows, from_predictions, stack, to_rows

log = logging.getLogger("shipyard.handler.sklearn")

SAFE_SUFFIXES = (".skops",)
PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")


class SklearnConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["predict", "predict_proba", "predict_log_proba", "decision_function", "transform"] = "predict"
    """Which estimator method answers a request."""
    features: list[str] | None = None
    """Feature order for records; defaults to the schema's field order, then the estimator's feature_names_in_."""
    allow_pickle: bool = False
    """Load .joblib/.pkl files. Unpickling runs code from the file: only for files you trust."""
    trusted_types: list[str] = Field(default_factory=list)
    """Extra types a .skops file may contain beyond skops' defaults."""


def parse_config(config: dict[str, Any], handler: str) -> Any:
    try:
        return SklearnConfig.model_validate(config) if handler == "sklearn" else None
    except ValidationError as exc:
        problems = "; ".join(f"config.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise HandlerLoadError(f"handler 'sklearn': {problems}") from None


def find_model_file(model_path: str | None, suffixes: Sequence[str], handler: str) -> Path:
    if model_path is None:
        raise HandlerLoadError(f"handler {handler!r} needs a model: set `model:` to a file or directory")
    path = Path(model_path)
    if path.is_file():
        return path
    found = sorted(p for p in path.iterdir() if p.suffix in suffixes) if path.is_dir() else []
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise HandlerLoadError(
            f"handler {handler!r}: {what} model files ({', '.join(suffixes)}) in {model_path!r}; "
            "point `model:` at exactly one file"
        )
    return found[0]


class SklearnHandler:
    def __init__(self, config: dict[str, Any], model_path: str | None, feature_names: list[str] | None = None):
        self.config: SklearnConfig = parse_config(config, "sklearn")
        file = find_model_file(model_path, SAFE_SUFFIXES + PICKLE_SUFFIXES, "sklearn")
        self.estimator = self._load(file)
        names = getattr(self.estimator, "feature_names_in_", None)
        self.features = self.config.features or feature_names or (list(names) if names is not None else None)
        if not callable(getattr(self.estimator, self.config.method, None)):
            raise HandlerLoadError(
                f"handler 'sklearn': {type(self.estimator).__name__} has no method {self.config.method!r}; "
                "choose another config.method"
            )
        self._call = getattr(self.estimator, self.config.method)

    def _load(self, file: Path) -> Any:
        if file.suffix in SAFE_SUFFIXES:
            import skops.io

            untrusted = [t for t in skops.io.get_untrusted_types(file=file) if t not in self.config.trusted_types]
            if untrusted:
                raise HandlerLoadError(
                    f"handler 'sklearn': {file.name} contains types skops does not trust: {', '.join(untrusted)}; "
                    "list them under config.trusted_types if you trust this file"
                )
            return skops.io.load(file, trusted=self.config.trusted_types or None)
        if file.suffix in PICKLE_SUFFIXES and not self.config.allow_pickle:
            raise HandlerLoadError(
                f"handler 'sklearn': {file.name} is a pickle-based file and loading it runs code from the file; "
                "save the model with skops (.skops), or set config.allow_pickle: true if you trust it"
            )
        import joblib

        return joblib.load(file)

    def predict(self, payload: Any) -> Any:
        rows = to_rows(payload, self.features)
        return from_predictions(self._run(rows.matrix), rows)

    def predict_batch(self, payloads: list[Any]) -> list[Any]:
        """Every payload's rows in one estimator call; a malformed payload fails only its own request."""
        parsed: list[Rows | ShipyardError] = []
        for payload in payloads:
            try:
                parsed.append(to_rows(payload, self.features))
            except ShipyardError as exc:
                parsed.append(exc)
        good = [rows for rows in parsed if isinstance(rows, Rows)]
        predictions = self._run(stack(good)) if good else []
        results: list[Any] = []
        offset = 0
        for rows in parsed:
            if isinstance(rows, ShipyardError):
                results.append(rows)
                continue
            results.append(from_predictions(predictions[offset : offset + len(rows)], rows))
            offset += len(rows)
        return results

    def predict_matrix(self, matrix: np.ndarray) -> list[Any]:
        """Batch jobs' columnar path: for records whose feature values are `matrix`'s rows, the value of
        each record's `{"prediction": value}` from predict_batch, from the same single estimator call."""
        predictions = self._run(matrix)
        return predictions.tolist() if isinstance(predictions, np.ndarray) else list(predictions)

    def _run(self, matrix: Any) -> Any:
        try:
            return self._call(np.asarray(matrix))
        except ValueError as exc:  # sklearn's input validation: wrong width, non-numeric values
            raise BadRequest(f"the model rejected the input: {exc}") from exc
