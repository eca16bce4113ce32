"""Built-in handlers that serve a model file with no Python from the user."""

from __future__ import annotations

from shipyard.errors import HandlerLoadError


def builtin_handler(name: str) -> type:
    if name == "sklearn":
        from shipyard.serving.builtin.sklearn import SklearnHandler

        return SklearnHandler
    if name == "onnx":
        from shipyard.serving.builtin.onnx import OnnxHandler

        return OnnxHandler
    raise HandlerLoadError(f"unknown built-in handler {name!r}; built-ins are: sklearn, onnx")
