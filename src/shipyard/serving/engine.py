"""The data plane of one replica: admission, batching, timeouts and the calls into the handler.

Transport-independent: the HTTP app (plain JSON and OIP v2 alike) hands payloads to `Engine.predict`.
Predictions run in worker threads, so the event loop keeps answering health checks while a model works.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from shipyard.errors import (
    HandlerLoadError,
    NotReady,
    Overloaded,
    PredictionFailed,
    PredictionTimeout,
    ShipyardError,
)
from shipyard.serving.batcher import Batcher, BatchItem
from shipyard.serving.dispatcher import Dispatcher
from shipyard.serving.handler import BoundHandler, HandlerRef, construct
from shipyard.serving.metrics import ReplicaMetrics
from shipyard.serving.schema import SchemaChecker
from shipyard.spec.models import RealtimeAPI

log = logging.getLogger("shipyard.engine")


class State(StrEnum):
    loading = "loading"  #: the handler is being constructed
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
    name: str | None = None
    version: int | None = None


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
        self._class = handler_class
        self._ref = ref
        self._handler: BoundHandler | None = None
        self.schema = SchemaChecker(api.input_schema) if api.input_schema else None
        self._pool = ThreadPoolExecutor(api.concurrency.max_concurrency, thread_name_prefix="predict-batch")
        self._dispatcher: Dispatcher | None = None
        self._batcher: Batcher | None = None
        batch_size = api.batching.max_batch_size if api.batching else 1
        self.capacity = api.concurrency.max_concurrency * batch_size + api.concurrency.max_queue_length
        self.admitted = 0
        metrics.track(lambda: self.admitted, lambda: self.admitted - self.running)

    @property
    def running(self) -> int:
        if self._batcher is not None:
            return self._batcher.running
        return self._dispatcher.running if self._dispatcher is not None else 0

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
        """Construct the handler (blocking: call it from a thread). Failure is recorded, not raised."""
        started = time.monotonic()
        options = {}
        if self._ref.is_builtin and self.api.input_schema is not None:
            options["feature_names"] = list(self.api.input_schema.fields)
        try:
            self._handler = construct(self._class, self._ref, self.api.config, self.model.path, **options)
        except HandlerLoadError as exc:
            self.load_error = exc.message
            self.state = State.failed
            return
        gc.collect()
        gc.freeze()  # the model and libraries live as long as the process: spare them every full collection
        self.state = State.ready
        self.metrics.ready.set(1)
        log.info("api %s is ready (handler loaded in %.2fs)", self.api.name, time.monotonic() - started)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.api.batching is None:
            self._dispatcher = Dispatcher(self.api.concurrency.max_concurrency, loop)
            return
        self._batcher = Batcher(
            self._run_batch,
            max_batch_size=self.api.batching.max_batch_size,
            max_wait_ms=self.api.batching.max_wait_ms,
            slots=self.api.concurrency.max_concurrency,
            submit_to_thread=lambda fn, *args: loop.run_in_executor(self._pool, fn, *args),
            metrics=self.metrics,
        )
        self._batcher.start()

    async def close(self) -> None:
        if self._batcher:
            await self._batcher.stop()
        if self._dispatcher:
            self._dispatcher.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def predict(self, payload: Any, headers: Any, query: Any, request_id: str) -> Any:
        if self._handler is None:
            raise NotReady(f"API {self.api.name!r}")
        if self.admitted >= self.capacity:
            raise Overloaded()
        self.admitted += 1
        if self._batcher is not None:
            future = self._batcher.submit(payload, headers, query, request_id)
        else:
            assert self._dispatcher is not None
            future = self._dispatcher.submit(lambda: self._call_predict(payload, headers, query, request_id))
        # Past the timeout the caller is answered 504 at once. A running prediction cannot be stopped: its
        # thread finishes in the background and keeps its slot until then, so max_concurrency holds.
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
        except Exception as exc:
            return _as_error(exc, [request_id])

    def _run_batch(self, batch: list[BatchItem]) -> list[Any]:
        assert self._handler is not None
        if self._handler.predict_batch is None:
            return [self._call_predict(i.payload, i.headers, i.query, i.request_id) for i in batch]
        ids = [item.request_id for item in batch]
        try:
            results = self._handler.predict_batch(
                [i.payload for i in batch], [i.headers for i in batch], [i.query for i in batch]
            )
        except Exception as exc:
            return [_as_error(exc, ids)] * len(batch)
        if not isinstance(results, list | tuple):
            log.error(
                "predict_batch returned a %s for requests %s; it must return a list",
                type(results).__name__,
                ",".join(ids),
            )
            return [PredictionFailed("predict_batch did not return a list")] * len(batch)
        if len(results) != len(batch):
            return list(results)  # the batcher reports the mismatch and fails the whole batch
        return [_as_error(r, [i]) if isinstance(r, BaseException) else r for r, i in zip(results, ids, strict=True)]

    def describe(self) -> dict[str, Any]:
        api = self.api
        return {
            "name": api.name,
            "kind": api.kind,
            "status": self.state.value,
            "handler": api.handler,
            "model": {
                "source": self.model.source,
                "path": self.model.path,
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


def _as_error(exc: BaseException, request_ids: list[str]) -> ShipyardError:
    """A handler's own ShipyardError keeps its status; anything else is logged and becomes a generic 500."""
    if isinstance(exc, ShipyardError):
        return exc
    log.error("handler raised for request(s) %s", ",".join(request_ids), exc_info=exc)
    return PredictionFailed()


def model_display_path(path: str | None, project_dir: str) -> str | None:
    if path is None:
        return None
    resolved = Path(path)
    return resolved.relative_to(project_dir).as_posix() if resolved.is_relative_to(project_dir) else path
