"""The user's handler: import it, construct it, and call it with only the arguments it declares.

A handler is a class with `__init__(self, config, model_path)`, `predict(self, payload)` and optionally
`predict_batch(self, payloads) -> list`. `headers` and `query` keyword parameters are passed only when the
method declares them (or takes `**kwargs`).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.errors import HandlerLoadError, PathOutsideProject

log = logging.getLogger("shipyard.handler")

PredictFn = Callable[[Any, Mapping[str, str] | None, Mapping[str, str] | None], Any]
PredictBatchFn = Callable[[list[Any], list[Mapping[str, str]], list[Mapping[str, str]]], list[Any]]


@dataclass(frozen=True)
class HandlerRef:
    """Where a handler class lives: a file inside the project and a class name, or a built-in."""

    text: str
    project_dir: Path

    @property
    def is_builtin(self) -> bool:
        return ":" not in self.text

    def file(self) -> Path:
        relative = self.text.split(":", 1)[0]
        path = (self.project_dir / relative).resolve()
        if not path.is_relative_to(self.project_dir.resolve()):
            raise PathOutsideProject("handler file", relative, str(self.project_dir))
        return path


def import_handler_class(ref: HandlerRef) -> type:
    """Import the handler class named by `ref`; every failure is a HandlerLoadError that says what to fix."""
    if ref.is_builtin:
        from shipyard.serving.builtin import builtin_handler

        return builtin_handler(ref.text)
    path = ref.file()
    class_name = ref.text.split(":", 1)[1]
    if not path.is_file():
        raise HandlerLoadError(
            f"handler {ref.text!r}: file {path.name!r} does not exist in {str(ref.project_dir)!r}; "
            "create it or fix the handler key"
        )
    module = _import_file(path, ref)
    handler_class = getattr(module, class_name, None)
    if not isinstance(handler_class, type):
        classes = sorted(
            name
            for name, value in vars(module).items()
            if isinstance(value, type) and value.__module__ == module.__name__
        )
        raise HandlerLoadError(
            f"handler {ref.text!r}: {path.name} has no class {class_name!r}; "
            f"classes defined there: {', '.join(classes) or 'none'}"
        )
    if not callable(getattr(handler_class, "predict", None)) and not callable(
        getattr(handler_class, "predict_batch", None)
    ):
        raise HandlerLoadError(f"handler {ref.text!r}: class {class_name} needs a predict or predict_batch method")
    return handler_class


def _import_file(path: Path, ref: HandlerRef) -> Any:
    root = str(ref.project_dir.resolve())
    if root not in sys.path:
        sys.path.insert(0, root)  # sibling modules of the handler import as they would in the user's shell
    module_name = ".".join(path.relative_to(root).with_suffix("").parts)
    cached = sys.modules.get(module_name)
    if cached is not None and getattr(cached, "__file__", None) != str(path):
        del sys.modules[module_name]  # a module of the same name from another project, not this file
    importlib.invalidate_caches()
    try:
        return importlib.import_module(module_name)
    except Exception as exc:
        log.debug("importing %s failed", path, exc_info=True)
        raise HandlerLoadError(
            f"handler {ref.text!r}: importing {path.name} failed: {type(exc).__name__}: {exc}"
        ) from exc


@dataclass(frozen=True)
class BoundHandler:
    """A constructed handler with its methods adapted to one calling convention."""

    instance: Any
    predict: PredictFn
    predict_batch: PredictBatchFn | None
    wants_headers: bool = False
    """Whether predict or predict_batch declares `headers`; callers may pass None otherwise."""
    wants_query: bool = False


def construct(
    handler_class: type,
    ref: HandlerRef,
    config: dict[str, Any],
    model_path: str | None,
    **builtin_options: Any,
) -> BoundHandler:
    """Call the handler's __init__; if it raises, the HandlerLoadError carries the exception's text."""
    try:
        instance = handler_class(config, model_path, **builtin_options)
    except Exception as exc:
        log.debug("handler %s failed to load", ref.text, exc_info=True)
        message = getattr(exc, "message", None) or str(exc)
        raise HandlerLoadError(
            f"handler {ref.text!r}: {handler_class.__name__}.__init__ raised {type(exc).__name__}: {message}"
        ) from exc
    return bind(instance)


def bind(instance: Any) -> BoundHandler:
    predict = getattr(instance, "predict", None)
    predict_batch = getattr(instance, "predict_batch", None)
    single: PredictFn | None = _adapt(predict) if callable(predict) else None
    batch: PredictBatchFn | None = _adapt(predict_batch) if callable(predict_batch) else None
    if single is None and batch is not None:
        single = _single_from_batch(batch)
    if single is None:
        raise HandlerLoadError(f"handler {type(instance).__name__} needs a predict or predict_batch method")
    declared = [_declares(method) for method in (predict, predict_batch) if callable(method)]
    wants_headers = any(headers for headers, _ in declared)
    wants_query = any(query for _, query in declared)
    return BoundHandler(instance, single, batch, wants_headers, wants_query)


def _declares(method: Callable[..., Any]) -> tuple[bool, bool]:
    parameters = inspect.signature(method).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return True, True
    return "headers" in parameters, "query" in parameters


def _adapt(method: Callable[..., Any]) -> Callable[[Any, Any, Any], Any]:
    """`method(arg, headers, query)` passing only the keywords `method` declares; `arg` is a payload or a list."""
    wants_headers, wants_query = _declares(method)
    if wants_headers and wants_query:
        return lambda arg, headers, query: method(arg, headers=headers, query=query)
    if wants_headers:
        return lambda arg, headers, query: method(arg, headers=headers)
    if wants_query:
        return lambda arg, headers, query: method(arg, query=query)
    return lambda arg, headers, query: method(arg)


def _single_from_batch(batch: PredictBatchFn) -> PredictFn:
    def predict(payload: Any, headers: Mapping[str, str] | None, query: Mapping[str, str] | None) -> Any:
        result = batch([payload], [headers or {}], [query or {}])
        if isinstance(result[0], BaseException):
            raise result[0]
        return result[0]

    return predict
