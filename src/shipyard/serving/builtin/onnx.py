"""`handler: onnx` — an ONNX graph run by onnxruntime on the CPU (install the `onnx` extra)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from shipyard.errors import BadRequest, HandlerLoadError
from shipyard.serving.builtin.rows import Form, to_rows
from shipyard.serving.builtin.sklearn import find_model_file

_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


class OnnxConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outputs: list[str] | None = None
    """Graph outputs to return; default: all of them (the only one when there is one)."""
    features: list[str] | None = None
    """Feature order for records; defaults to the schema's field order."""
    intra_op_threads: int = 1
    """onnxruntime threads per prediction; replicas, not threads, are how Shipyard scales."""


class OnnxHandler:
    def __init__(self, config: dict[str, Any], model_path: str | None, feature_names: list[str] | None = None):
        try:
            self.config = OnnxConfig.model_validate(config)
        except ValidationError as exc:
            problems = "; ".join(f"config.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise HandlerLoadError(f"handler 'onnx': {problems}") from None
        try:
            import onnxruntime
        except ImportError:
            raise HandlerLoadError("handler 'onnx' needs onnxruntime: pip install 'shipyard[onnx]'") from None
        file = find_model_file(model_path, (".onnx",), "onnx")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.config.intra_op_threads
        self.session = onnxruntime.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
        self.inputs = self.session.get_inputs()
        self.output_names = self.config.outputs or [o.name for o in self.session.get_outputs()]
        self.features = self.config.features or feature_names

    def predict(self, payload: Any) -> Any:
        if isinstance(payload, dict) and set(payload) <= {i.name for i in self.inputs} and len(self.inputs) > 1:
            feeds = {i.name: np.asarray(payload[i.name], dtype=_ORT_TYPES.get(i.type)) for i in self.inputs}
            return self._outputs(self._run(feeds), Form.array)
        rows = to_rows(payload, self.features)
        first = self.inputs[0]
        matrix: np.ndarray = np.asarray(rows.matrix, dtype=_ORT_TYPES.get(first.type, np.float32))
        return self._outputs(self._run({first.name: matrix}), rows.form)

    def _run(self, feeds: dict[str, np.ndarray]) -> list[Any]:
        try:
            return list(self.session.run(self.output_names, feeds))
        except Exception as exc:  # onnxruntime raises its own types for bad shapes and dtypes
            raise BadRequest(f"the ONNX model rejected the input: {exc}") from exc

    def _outputs(self, values: list[Any], form: Form) -> Any:
        shaped = [self._shape(value, form) for value in values]
        if len(shaped) == 1:
            return shaped[0]
        return dict(zip(self.output_names, shaped, strict=True))

    @staticmethod
    def _shape(value: Any, form: Form) -> Any:
        if form is Form.array or not isinstance(value, np.ndarray):
            return value
        listed = value.tolist()
        return {"prediction": listed[0]} if form is Form.single else {"predictions": listed}
