"""The data plane of one replica: admission, batching, timeouts and the calls into the handler.

Transport-independent: the HTTP app (plain JSON and OIP v2 alike) hands payloads to `Engine.predict`.
Predictions run in worker threads (daemon threads: a shutdown is bounded by the grace period, never by a
prediction), so the event loop keeps answering health checks while a model works. An `async def` handler
method runs on the event loop instead, at most `max_concurrency` at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gc
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from shipyard.errors import (
    FeatureMismatch,
    HandlerLoadError,
    NotReady,
    Overloaded,
    PredictionFailed,
    PredictionTimeout,
    ShipyardError,
)
from shipyard.registry.manifest import build_manifest
from shipyard.serving import tensors
from shipyard.serving.batcher import Batcher, BatchItem
from shipyard.serving.dispatcher import Dispatcher
from shipyard.serving.handler import BoundHandler, HandlerRef, construct, describe
from shipyard.serving.metrics import ReplicaMetrics
from shipyard.serving.schema import SchemaChecker
from shipyard.spec.models import RealtimeAPI

log = logging.getLogger("shipyard.engine")
_V2_TYPES = {"float": "FP64", "int": "INT64", "str": "BYTES", "bool": "BOOL"}


class State(StrEnum):
    loading = "loading"  #: the model is being hashed and the handler constructed
    ready = "ready"  #: predictions are served
    failed = "failed"  #: the handler's __init__ raised; see load_error


@dataclass(frozen=True)
class ModelInfo:
    """The model an API serves: where it came from and the digest of what was loaded."""

    source: str | None
    """As written in shipyard.yaml (a project path or a models:/ reference)."""
    path: str | None
    """The local file or directory handed to the handler."""
    digest: str | None
    """sha256 manifest digest; for a project path it is computed while the replica loads (None until then)."""
    name: str | None = None
    version: int | None = None
    shown_path: str | None = None
    """What GET / shows: the path relative to the project (None for a registry model: `source` names it)."""


class Engine:
    def __init__(
        self,
        api: RealtimeAPI,
        handler_class: type,
        ref: HandlerRef,
        model: ModelInfo,
        metrics: ReplicaMetrics,
    ) -> None:
        self.api = api
        self.model = model
        self.metrics = metrics
        self.state = State.loading
        self.load_error: str | None = None
        self.load_exit_code = 1
        """The exit code of `shipyard serve` when loading failed: 2 for a spec the model contradicts."""
        self._class = handler_class
        self._ref = ref
        self._handler: BoundHandler | None = None
        self.schema = SchemaChecker(api.input_schema) if api.input_schema else None
        self._dispatcher: Dispatcher | None = None
        self._batcher: Batcher | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_slots = asyncio.Semaphore(api.concurrency.max_concurrency)
        self._async_running = 0
        self.capacity = api.concurrency.max_concurrency + api.concurrency.max_queue_length
        """Without batching: requests running plus requests waiting, at most."""
        self.admitted = 0
        self.matrix_features: list[str] | None = None
        """For a built-in handler: the feature each column of one [n, features] tensor stands for."""
        self.default_output = tensors.DEFAULT_OUTPUT
        """The OIP v2 name of a result that is not a dict: the handler's one output when it declares one."""
        self.output_names: list[str] = []
        """The OIP v2 outputs the handler advertises (the built-ins); none for a handler of the user's."""
        metrics.track(lambda: self.admitted, lambda: max(0, self.admitted - self.running))

    @property
    def running(self) -> int:
        if self._batcher is not None:
            return self._batcher.running
        threads = self._dispatcher.running if self._dispatcher is not None else 0
        return threads + self._async_running

    @property
    def wants_headers(self) -> bool:
        return self._handler is not None and self._handler.wants_headers

    @property
    def wants_query(self) -> bool:
        return self._handler is not None and self._handler.wants_query

    @property
    def is_ready(self) -> bool:
        return self.state is State.ready

    def load(self) -> None:
        """Hash the model and construct the handler (blocking: call it from a thread). Failure is recorded."""
        started = time.monotonic()
        options = {}
        if self._ref.is_builtin and self.api.input_schema is not None:
            options["feature_names"] = list(self.api.input_schema.fields)
        try:
            self._hash_model()
            self._handler = construct(self._class, self._ref, self.api.config, self.model.path, **options)
        except (HandlerLoadError, OSError) as exc:
            self._fail(exc.message if isinstance(exc, ShipyardError) else f"cannot read the model: {exc}")
            self.load_exit_code = 2 if isinstance(exc, FeatureMismatch) else 1
            return
        except BaseException as exc:  # a bug of ours: the replica must still say that it will never be ready
            log.error("loading api %s failed inside Shipyard", self.api.name, exc_info=exc)
            self._fail(f"loading api {self.api.name!r} failed inside Shipyard: {describe(exc)}; see the log")
            return
        if self._ref.is_builtin:
            features = getattr(self._handler.instance, "features", None)
            self.matrix_features = list(features) if features else None
        self.output_names = [output["name"] for output in self.tensor_metadata()[1]]
        if len(self.output_names) == 1:
            self.default_output = self.output_names[0]
        gc.collect()
        gc.freeze()  # the model and libraries live as long as the process: spare them every full collection
        self.state = State.ready
        self.metrics.ready.set(1)
        log.info("api %s is ready (handler loaded in %.2fs)", self.api.name, time.monotonic() - started)

    def _fail(self, message: str) -> None:
        self.load_error = message
        self.state = State.failed

    def _hash_model(self) -> None:
        """A project model's digest is computed here, not before the port opens: a large model must not keep
        /healthz from answering."""
        if self.model.digest is None and self.model.path is not None:
            digest = build_manifest(self.model.path).digest
            self.model = dataclasses.replace(self.model, digest=digest)

    async def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        concurrency = self.api.concurrency.max_concurrency
        if self.api.batching is None:
            self._dispatcher = Dispatcher(concurrency, loop)
            return
        self._dispatcher = Dispatcher(concurrency, loop, name="predict-batch")
        self._batcher = Batcher(
            self._run_batch,
            max_batch_size=self.api.batching.max_batch_size,
            max_wait_ms=self.api.batching.max_wait_ms,
            slots=concurrency,
            submit_to_thread=self._submit_batch,
            metrics=self.metrics,
        )
        self._batcher.start()

    async def close(self) -> None:
        if self._batcher:
            await self._batcher.stop()
        if self._dispatcher:
            self._dispatcher.close()

    async def predict(self, payload: Any, headers: Any, query: Any, request_id: str) -> Any:
        handler = self._handler
        if handler is None:
            raise NotReady(f"API {self.api.name!r}")
        if self._batcher is not None:
            if self._batcher.is_full(self.admitted, self.api.concurrency.max_queue_length):
                raise Overloaded()
            self.admitted += 1
            future = self._batcher.submit(payload, headers, query, request_id)
        else:
            if self.admitted >= self.capacity:
                raise Overloaded()
            self.admitted += 1
            if handler.predict_async is not None:
                future = self._on_loop(self._call_predict_async(handler, payload, headers, query, request_id))
            else:
                assert self._dispatcher is not None
                future = self._dispatcher.submit(lambda: self._call_predict(payload, headers, query, request_id))
        # Past the timeout the caller is answered 504 at once. A running prediction in a thread cannot be
        # stopped: it finishes in the background and keeps its slot until then, so max_concurrency holds.
        timer = asyncio.get_running_loop().call_later(self.api.timeout, self._expire, future, request_id)
        try:
            result = await future
        finally:
            timer.cancel()
            self.admitted -= 1
        if isinstance(result, BaseException):
            raise result
        return result

    def _expire(self, future: asyncio.Future[Any], request_id: str) -> None:
        if not future.done():
            log.warning("request %s passed the timeout of %gs", request_id, self.api.timeout)
            future.set_exception(PredictionTimeout(self.api.timeout))

    def _call_predict(self, payload: Any, headers: Any, query: Any, request_id: str) -> Any:
        assert self._handler is not None
        try:
            return self._handler.predict(payload, headers, query)
        except _HANDLER_FAILURES as exc:
            return _as_error(exc, [request_id])

    async def _call_predict_async(
        self, handler: BoundHandler, payload: Any, headers: Any, query: Any, request_id: str
    ) -> Any:
        assert handler.predict_async is not None
        async with self._async_slots:
            self._async_running += 1
            try:
                return await handler.predict_async(payload, headers, query)
            except _HANDLER_FAILURES as exc:
                return _as_error(exc, [request_id])
            finally:
                self._async_running -= 1

    def _on_loop(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        """Run a coroutine as a task behind a plain future: the timeout settles the future and cancels the task."""
        assert self._loop is not None
        future: asyncio.Future[Any] = self._loop.create_future()
        task = self._loop.create_task(coroutine)

        def settle(done: asyncio.Task[Any]) -> None:
            if future.done():
                return
            if done.cancelled():
                future.set_exception(PredictionFailed("the prediction was cancelled"))
            elif done.exception() is not None:
                future.set_exception(done.exception())  # type: ignore[arg-type]
            else:
                future.set_result(done.result())

        task.add_done_callback(settle)
        future.add_done_callback(lambda _: task.cancel())
        return future

    def _submit_batch(self, run_batch: Callable[[list[BatchItem]], list[Any]], batch: list[BatchItem]) -> Any:
        handler = self._handler
        assert handler is not None and self._dispatcher is not None
        if handler.predict_batch_async is not None or (handler.predict_batch is None and handler.predict_async):
            return self._on_loop(self._run_batch_async(handler, batch))
        return self._dispatcher.submit(functools.partial(run_batch, batch))

    def _run_batch(self, batch: list[BatchItem]) -> list[Any]:
        assert self._handler is not None
        if self._handler.predict_batch is None:
            return [self._call_predict(i.payload, i.headers, i.query, i.request_id) for i in batch]
        ids = [item.request_id for item in batch]
        try:
            results = self._handler.predict_batch(
                [i.payload for i in batch], [i.headers for i in batch], [i.query for i in batch]
            )
        except _HANDLER_FAILURES as exc:
            return [_as_error(exc, ids)] * len(batch)
        return _batch_results(results, ids)

    async def _run_batch_async(self, handler: BoundHandler, batch: list[BatchItem]) -> list[Any]:
        if handler.predict_batch_async is None:
            calls = [self._call_predict_async(handler, i.payload, i.headers, i.query, i.request_id) for i in batch]
            return list(await asyncio.gather(*calls))
        ids = [item.request_id for item in batch]
        try:
            results = await handler.predict_batch_async(
                [i.payload for i in batch], [i.headers for i in batch], [i.query for i in batch]
            )
        except _HANDLER_FAILURES as exc:
            return [_as_error(exc, ids)] * len(batch)
        return _batch_results(results, ids)

    def tensor_metadata(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """OIP v2 inputs and outputs: the schema's fields as columns (what infer accepts with a schema), else
        what a built-in handler knows of its model; outputs as far as a built-in handler knows them."""
        instance = self._handler.instance if self._handler is not None and self._ref.is_builtin else None
        schema = self.api.input_schema
        if schema is not None:
            inputs = [
                {"name": name, "datatype": _V2_TYPES[field.type.value], "shape": [-1]}
                for name, field in schema.fields.items()
            ]
        else:
            inputs = list(getattr(instance, "tensor_inputs", list)())
        outputs = list(getattr(instance, "tensor_outputs", list)())
        return inputs, outputs

    def describe(self) -> dict[str, Any]:
        api = self.api
        return {
            "name": api.name,
            "kind": api.kind,
            "status": self.state.value,
            "handler": api.handler,
            "model": {
                "source": self.model.source,
                "path": self.model.shown_path,
                "digest": self.model.digest,
                "name": self.model.name,
                "version": self.model.version,
            },
            "batching": api.batching.model_dump() if api.batching else None,
            "concurrency": api.concurrency.model_dump(),
            "timeout_seconds": api.timeout,
            "max_body_size": api.max_body_size,
            "content_types": api.accepted_content_types(),
            "schema": api.input_schema.model_dump(mode="json") if api.input_schema else None,
            **({"error": self.load_error} if self.load_error else {}),
        }


def _batch_results(results: Any, ids: list[str]) -> list[Any]:
    if not isinstance(results, list):
        if isinstance(results, np.ndarray) and results.ndim > 0:
            results = list(results)  # one row (or scalar) per payload
        elif isinstance(results, Sequence) and not isinstance(results, str | bytes | bytearray):
            results = list(results)
        else:
            log.error(
                "predict_batch returned a %s for requests %s; it must return a list (or a sequence) with one result "
                "per payload",
                type(results).__name__,
                ",".join(ids),
            )
            return [PredictionFailed("predict_batch did not return a list")] * len(ids)
    if len(results) != len(ids):
        return results  # type: ignore[no-any-return] # the batcher reports the mismatch and fails the whole batch
    return [_as_error(r, [i]) if isinstance(r, BaseException) else r for r, i in zip(results, ids, strict=True)]


_HANDLER_FAILURES = (Exception, SystemExit, KeyboardInterrupt)
"""What a handler's predict may raise and still leave a 500, not an ended replica: sys.exit() too.
(asyncio.CancelledError is not among them: a timeout cancels async predictions on purpose.)"""


def _as_error(exc: BaseException, request_ids: list[str]) -> ShipyardError:
    """A handler's own ShipyardError keeps its status; anything else is logged and becomes a generic 500."""
    if isinstance(exc, ShipyardError):
        return exc
    log.error("handler raised for request(s) %s", ",".join(request_ids), exc_info=exc)
    return PredictionFailed()
