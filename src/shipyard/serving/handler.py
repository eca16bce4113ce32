"""The user's handler: import it, construct it, and call it with only the arguments it declares.

A handler is a class with `__init__(self, config, model_path)`, `predict(self, payload)` and optionally
`predict_batch(self, payloads) -> list`. `headers` and `query` keyword parameters are passed only when the
method declares them (or takes `**kwargs`). Either method may be `async def`: the replica awaits it on its
event loop; callers that are not async (batch jobs) run it to completion on a loop of their thread.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import sys
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.errors import HandlerLoadError, PathOutsideProject

log = logging.getLogger("shipyard.handler")

PredictFn = Callable[[Any, Mapping[str, str] | None, Mapping[str, str] | None], Any]
PredictBatchFn = Callable[[list[Any], list[Mapping[str, str]], list[Mapping[str, str]]], list[Any]]
AsyncPredictFn = Callable[[Any, Mapping[str, str] | None, Mapping[str, str] | None], Awaitable[Any]]
AsyncPredictBatchFn = Callable[[list[Any], list[Mapping[str, str]], list[Mapping[str, str]]], Awaitable[list[Any]]]


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
            raise PathOutsideProject(
                "handler file",
                relative,
                str(self.project_dir),
                "move the file into the project and name it relative to shipyard.yaml (handler: handler.py:Class)",
            )
        return path


def import_handler_class(ref: HandlerRef) -> type:
    """Import the handler class named by `ref`; every failure is a HandlerLoadError that says what to fix."""
    if ref.is_builtin:
        from shipyard.serving.builtin import builtin_handler

        _put_on_path(ref.project_dir)  # a model's own types (skops trusted_types) live in project modules
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


def _put_on_path(project_dir: Path) -> str:
    """The project folder first on sys.path: its modules import as they would in the user's shell."""
    root = str(project_dir.resolve())
    if root not in sys.path:
        sys.path.insert(0, root)
    return root


def _import_file(path: Path, ref: HandlerRef) -> Any:
    root = _put_on_path(ref.project_dir)
    module_name = ".".join(path.relative_to(root).with_suffix("").parts)
    cached = sys.modules.get(module_name)
    if cached is not None and getattr(cached, "__file__", None) != str(path):
        del sys.modules[module_name]  # a module of the same name from another project, not this file
    importlib.invalidate_caches()
    try:
        return importlib.import_module(module_name)
    except BaseException as exc:  # a module-level sys.exit() too: it must not end the process without a word
        log.debug("importing %s failed", path, exc_info=True)
        raise HandlerLoadError(f"handler {ref.text!r}: importing {path.name} failed: {describe(exc)}") from exc


@dataclass(frozen=True)
class BoundHandler:
    """A constructed handler with its methods adapted to one calling convention.

    `predict` and `predict_batch` are always plain calls; for an `async def` method they run the coroutine
    to completion, and `predict_async` / `predict_batch_async` hold the coroutine function itself."""

    instance: Any
    predict: PredictFn
    predict_batch: PredictBatchFn | None
    wants_headers: bool = False
    """Whether predict or predict_batch declares `headers`; callers may pass None otherwise."""
    wants_query: bool = False
    predict_async: AsyncPredictFn | None = None
    predict_batch_async: AsyncPredictBatchFn | None = None


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
    except HandlerLoadError:
        raise  # a built-in handler's own refusal already names the handler and the remedy
    except BaseException as exc:  # sys.exit() or KeyboardInterrupt too: the load thread must report them
        log.debug("handler %s failed to load", ref.text, exc_info=True)
        raise HandlerLoadError(
            f"handler {ref.text!r}: {handler_class.__name__}.__init__ raised {describe(exc)}"
        ) from exc
    return bind(instance)


def describe(exc: BaseException) -> str:
    """`Type: message`, or the type alone when there is no message (KeyboardInterrupt)."""
    message = getattr(exc, "message", None) or str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def bind(instance: Any) -> BoundHandler:
    predict = getattr(instance, "predict", None)
    predict_batch = getattr(instance, "predict_batch", None)
    single: Any = _adapt(predict) if callable(predict) else None
    batch: Any = _adapt(predict_batch) if callable(predict_batch) else None
    single_async, batch_async = _is_async(predict), _is_async(predict_batch)
    if single is None and batch is not None:
        single, single_async = _single_from_batch(batch, batch_async), batch_async
    if single is None:
        raise HandlerLoadError(f"handler {type(instance).__name__} needs a predict or predict_batch method")
    declared = [_declares(method) for method in (predict, predict_batch) if callable(method)]
    return BoundHandler(
        instance,
        _blocking(single) if single_async else single,
        _blocking(batch) if batch is not None and batch_async else batch,
        wants_headers=any(headers for headers, _ in declared),
        wants_query=any(query for _, query in declared),
        predict_async=single if single_async else None,
        predict_batch_async=batch if batch_async else None,
    )


def _is_async(method: Any) -> bool:
    return callable(method) and inspect.iscoroutinefunction(method)


_THREAD_LOOPS = threading.local()


def _blocking(coroutine_function: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """A plain call that runs the coroutine on this thread's own event loop (kept, so a handler's loop-bound
    resources such as client sessions survive from one call to the next)."""

    def call(*args: Any) -> Any:
        loop = getattr(_THREAD_LOOPS, "loop", None)
        if loop is None:
            loop = _THREAD_LOOPS.loop = asyncio.new_event_loop()
        return loop.run_until_complete(coroutine_function(*args))

    return call


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


def _single_from_batch(batch: Any, is_async: bool) -> Any:
    def first(results: list[Any]) -> Any:
        if isinstance(results[0], BaseException):
            raise results[0]
        return results[0]

    if is_async:

        async def predict_async(
            payload: Any, headers: Mapping[str, str] | None, query: Mapping[str, str] | None
        ) -> Any:
            return first(await batch([payload], [headers or {}], [query or {}]))

        return predict_async

    def predict(payload: Any, headers: Mapping[str, str] | None, query: Mapping[str, str] | None) -> Any:
        return first(batch([payload], [headers or {}], [query or {}]))

    return predict
