"""`handler: onnx` — an ONNX graph run by onnxruntime on the CPU (install the `onnx` extra)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from shipyard.errors import BadRequest, HandlerLoadError
from shipyard.serving.builtin.model_file import ModelFileProblem, find_model_file
from shipyard.serving.builtin.rows import Form, check_width, to_rows
from shipyard.serving.tensors import datatype_of
from shipyard.spec.loader import describe_errors

_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
    "tensor(float16)": np.float16,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
}


class OnnxConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outputs: list[str] | None = None
    """Graph outputs to return; default: all of them (the only one when there is one)."""
    features: list[str] | None = None
    """Feature order for records; defaults to the schema's field order."""
    intra_op_threads: int = 1
    """onnxruntime threads per prediction; replicas, not threads, are how Shipyard scales."""


SUFFIXES = (".onnx",)


class OnnxHandler:
    def __init__(self, config: dict[str, Any], model_path: str | None, feature_names: list[str] | None = None):
        problems = self.check(config, model_path)
        if problems:
            raise HandlerLoadError(f"handler 'onnx': {'; '.join(problems)}")
        self.config = OnnxConfig.model_validate(config)
        import onnxruntime

        file = find_model_file(model_path, SUFFIXES, "onnx")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.config.intra_op_threads
        self.session = onnxruntime.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
        self.inputs = self.session.get_inputs()
        self.output_names = self.config.outputs or [o.name for o in self.session.get_outputs()]
        self.features = self.config.features or feature_names
        shape = self.inputs[0].shape or []
        self.width: int | None = shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None

    @staticmethod
    def check(config: dict[str, Any], model_path: str | None, check_model: bool = True) -> list[str]:
        """What can be refused without loading the model, one `key: problem` line each."""
        try:
            OnnxConfig.model_validate(config)
        except ValidationError as exc:
            return describe_errors(exc, OnnxConfig, "config")
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return ["handler: 'onnx' needs onnxruntime: pip install 'shipyard[onnx]'"]
        if not check_model:
            return []
        try:
            find_model_file(model_path, SUFFIXES, "onnx")
        except ModelFileProblem as exc:
            return [f"model: {exc}"]
        return []

    def predict(self, payload: Any) -> Any:
        if isinstance(payload, dict) and set(payload) <= {i.name for i in self.inputs} and len(self.inputs) > 1:
            feeds = {i.name: np.asarray(payload[i.name], dtype=_ORT_TYPES.get(i.type)) for i in self.inputs}
            return self._outputs(self._run(feeds), Form.array)
        rows = to_rows(payload, self.features)
        check_width(rows, self.width)
        first = self.inputs[0]
        try:
            matrix: np.ndarray = np.asarray(rows.matrix, dtype=_ORT_TYPES.get(first.type, np.float32))
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"the ONNX model rejected the input: {exc}") from None
        return self._outputs(self._run({first.name: matrix}), rows.form)

    def tensor_inputs(self) -> list[dict[str, Any]]:
        """OIP v2 metadata: the graph's inputs, with symbolic dimensions as -1."""
        return [_tensor_meta(node) for node in self.inputs]

    def tensor_outputs(self) -> list[dict[str, Any]]:
        by_name = {node.name: node for node in self.session.get_outputs()}
        return [_tensor_meta(by_name[name]) for name in self.output_names if name in by_name]

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


def _tensor_meta(node: Any) -> dict[str, Any]:
    dtype = _ORT_TYPES.get(node.type)
    datatype = datatype_of(np.dtype(dtype)) if dtype is not None else None
    shape = [dim if isinstance(dim, int) else -1 for dim in (node.shape or [])]
    return {"name": node.name, "datatype": datatype or "BYTES", "shape": shape}
