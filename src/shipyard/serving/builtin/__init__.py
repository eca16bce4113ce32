"""Built-in handlers that serve a model file with no Python from the user."""

from __future__ import annotations

from typing import Any

from shipyard.errors import HandlerLoadError


def builtin_handler(name: str) -> type:
    if name == "sklearn":
        from shipyard.serving.builtin.sklearn import SklearnHandler

        return SklearnHandler
    if name == "onnx":
        from shipyard.serving.builtin.onnx import OnnxHandler

        return OnnxHandler
    raise HandlerLoadError(f"unknown built-in handler {name!r}; built-ins are: sklearn, onnx")


def check_builtin(name: str, config: dict[str, Any], model_path: str | None, check_model: bool = True) -> list[str]:
    """A built-in handler's config and model file, checked before a server binds: `key: problem` lines."""
    checker = builtin_handler(name).check  # type: ignore[attr-defined]
    problems: list[str] = checker(config, model_path, check_model)
    return problems
