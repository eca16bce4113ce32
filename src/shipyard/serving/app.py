"""The replica's HTTP transport as one ASGI callable: routes, bodies, errors and metrics; no model logic.

Plain JSON (`POST /predict`) and the Open Inference Protocol v2 (`POST /v2/models/{name}/infer`) both hand
their payload to the same `Engine`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers, QueryParams
from starlette.responses import Response

from shipyard import __version__
from shipyard.errors import (
    MethodNotAllowed,
    NotFound,
    NotReady,
    PayloadTooLarge,
    ShipyardError,
    ShuttingDown,
    UnsupportedMediaType,
)
from shipyard.serving import binary_tensors, codec, tensors
from shipyard.serving.engine import Engine
from shipyard.serving.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from shipyard.serving.metrics import UNMATCHED_ROUTE

log = logging.getLogger("shipyard.http")
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
JSON_TYPE = b"application/json"
BINARY_TYPE = b"application/octet-stream"
UNKNOWN_CATEGORY_LOG_SECONDS = 60.0


class ClientDisconnected(Exception):
    pass


@dataclass
class Request:
    scope: Scope
    receive: Receive
    request_id: str
    content_type: str | None
    content_length: int | None
    params: dict[str, str]
    content_encoding: str | None = None

    @property
    def headers(self) -> Headers:
        return Headers(scope=self.scope)

    @property
    def query(self) -> QueryParams:
        return QueryParams(self.scope.get("query_string", b""))


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: bytes = JSON_TYPE
    headers: tuple[tuple[bytes, bytes], ...] = ()


Endpoint = Callable[[Request], Awaitable["Reply | Response"]]


class ReplicaApp:
    def __init__(self, engine: Engine, on_load_failed: Callable[[], None] | None = None) -> None:
        self.engine = engine
        self._on_load_failed = on_load_failed
        self.stop_forced = False
        """Set when the user forced the stop (a second Ctrl-C): requests cut off were not out of time."""
        self._unknown_logged: dict[str, tuple[float, int]] = {}
        self._routes: dict[str, dict[str, Endpoint]] = {
            "/": {"POST": self.predict, "GET": self.describe},
            "/predict": {"POST": self.predict},
            "/healthz": {"GET": self.healthz},
            "/readyz": {"GET": self.readyz},
            "/metrics": {"GET": self.metrics},
            "/v2": {"GET": self.v2_server},
            "/v2/health/live": {"GET": self.healthz},
            "/v2/health/ready": {"GET": self.readyz},
        }
        self._model_routes: dict[str, dict[str, Endpoint]] = {
            "": {"GET": self.v2_model},
            "/ready": {"GET": self.v2_model_ready},
            "/infer": {"POST": self.v2_infer},
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    # -- transport ---------------------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request = _request(scope, receive)
        route = UNMATCHED_ROUTE
        try:
            route, methods, request.params = self._resolve(scope["path"])
            endpoint = methods.get(scope["method"]) or _other_method(scope["method"], methods, scope["path"])
            reply = await endpoint(request)
        except ShipyardError as exc:
            reply = error_reply(exc, request.request_id, _is_v2(scope))
        except ClientDisconnected:
            self.engine.metrics.observe(route, 499, time.perf_counter() - started)
            return
        except asyncio.CancelledError:
            # the requests still running when the grace period ends (or the stop is forced) are cancelled:
            # answer them, don't crash
            _uncancel()
            reply = self._cut_off(request, _is_v2(scope))
        except Exception:
            log.exception("request %s failed inside Shipyard", request.request_id)
            error = ShipyardError("internal error; see the replica's log")
            reply = error_reply(error, request.request_id, _is_v2(scope))
        status = await _send(reply, request, send)
        elapsed = time.perf_counter() - started
        self.engine.metrics.observe(route, status, elapsed)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "request_id=%s method=%s path=%s status=%d duration_ms=%.2f",
                request.request_id,
                scope["method"],
                scope["path"],
                status,
                elapsed * 1000,
            )

    def _cut_off(self, request: Request, v2: bool) -> Reply:
        if self.stop_forced:
            log.warning("request %s was cut off: the stop was forced before it finished", request.request_id)
        else:
            log.warning("request %s was cut off: it did not finish within the grace period", request.request_id)
        error = ShuttingDown(self.engine.api.grace_period, forced=self.stop_forced)
        return error_reply(error, request.request_id, v2)

    def _resolve(self, path: str) -> tuple[str, dict[str, Endpoint], dict[str, str]]:
        """The route template, its endpoints by method, and the path parameters."""
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/")
        methods = self._routes.get(path)
        if methods is not None:
            return path, methods, {}
        if path.startswith("/v2/models/"):
            found = self._model_route(path)
            if found is not None:
                return found
        raise NotFound(f"no route {path!r}; predictions go to POST /predict (or /v2/models/NAME/infer)")

    def _model_route(self, path: str) -> tuple[str, dict[str, Endpoint], dict[str, str]] | None:
        parts = path[len("/v2/models/") :].split("/")
        name, rest, template = parts[0], parts[1:], "/v2/models/{name}"
        version = None
        if len(rest) >= 2 and rest[0] == "versions":
            version, rest, template = rest[1], rest[2:], template + "/versions/{version}"
        suffix = "/" + "/".join(rest) if rest else ""
        methods = self._model_routes.get(suffix)
        if methods is None or not name:
            return None
        if name != self.engine.api.name:
            raise NotFound(f"model {name!r} is not served here; this replica serves {self.engine.api.name!r}")
        if version is not None and str(self.engine.model.version or "") != version:
            served = self.engine.model.version
            raise NotFound(f"model {name!r} version {version!r} is not served here; the version served is {served!r}")
        return template + suffix, methods, {"name": name}

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            try:
                message = await receive()
            except asyncio.CancelledError:
                # a forced stop skips the shutdown message: uvicorn's loop cancels this task when it ends
                await self.engine.close()
                return
            if message["type"] == "lifespan.startup":
                await self.engine.start()
                self._load_in_background(asyncio.get_running_loop())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.engine.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _load_in_background(self, loop: asyncio.AbstractEventLoop) -> None:
        def load() -> None:
            self.engine.load()
            if self.engine.load_error:
                log.error("%s", self.engine.load_error)
                if self._on_load_failed is not None:
                    loop.call_soon_threadsafe(self._on_load_failed)

        threading.Thread(target=load, name="load-handler", daemon=True).start()

    # -- endpoints ---------------------------------------------------------------------------------------

    async def predict(self, request: Request) -> Reply | Response:
        body = await _read_body(request, self.engine.api.max_body_size)
        payload = codec.decode(body, request.content_type, self.engine.api.accepted_content_types())
        self._check_schema(payload, request.request_id)
        result = await self.engine.predict(payload, *self._context(request), request.request_id)
        if isinstance(result, Response):
            return result
        try:
            content, content_type = codec.encode(result)
        except TypeError as exc:
            log.error("request %s: %s", request.request_id, exc)
            raise ShipyardError("the handler's result could not be encoded; see the API's log") from None
        return Reply(200, content, content_type.encode())

    def _context(self, request: Request) -> tuple[Headers | None, QueryParams | None]:
        """Headers and query for a handler that declares them; parsing them for one that doesn't is waste."""
        engine = self.engine
        return (request.headers if engine.wants_headers else None, request.query if engine.wants_query else None)

    def _check_schema(self, payload: Any, request_id: str) -> None:
        checker = self.engine.schema
        if checker is None:
            return
        if isinstance(payload, dict) and "instances" in payload and "instances" not in checker.schema.fields:
            payload = payload["instances"]  # KServe v1 `{"instances": [...]}`, unwrapped as the built-ins do
        report = checker.check(payload)
        for field in report.unknown_categories:
            self.engine.metrics.unknown_category(field)
            self._log_unknown_category(field, request_id)

    def _log_unknown_category(self, field: str, request_id: str) -> None:
        """One warning per field per minute at most: a flood of unknown values must not flood the log."""
        now = time.monotonic()
        last, skipped = self._unknown_logged.get(field, (float("-inf"), 0))
        if now - last < UNKNOWN_CATEGORY_LOG_SECONDS:
            self._unknown_logged[field] = (last, skipped + 1)
            return
        self._unknown_logged[field] = (now, 0)
        more = f" ({skipped} more since the last warning)" if skipped else ""
        log.warning(
            "request %s: unknown category in field %r let through (unknown_categories: warn)%s", request_id, field, more
        )

    async def describe(self, request: Request) -> Reply:
        return _json(200, self.engine.describe())

    async def healthz(self, request: Request) -> Reply:
        return _json(200, {"live": True, "status": "alive"})

    async def readyz(self, request: Request) -> Reply:
        if not self.engine.is_ready:
            if self.engine.load_error:
                raise ShipyardError(self.engine.load_error, 503)
            raise NotReady(f"API {self.engine.api.name!r}")
        return _json(200, {"ready": True, "status": "ready"})

    async def metrics(self, request: Request) -> Reply:
        return Reply(200, self.engine.metrics.render(), METRICS_CONTENT_TYPE.encode())

    async def v2_server(self, request: Request) -> Reply:
        return _json(200, {"name": "shipyard", "version": __version__, "extensions": [binary_tensors.EXTENSION]})

    async def v2_model(self, request: Request) -> Reply:
        engine = self.engine
        inputs, outputs = engine.tensor_metadata()
        return _json(
            200,
            {
                "name": engine.api.name,
                "versions": [str(engine.model.version)] if engine.model.version is not None else [],
                "platform": f"shipyard/{engine.api.handler}",
                "inputs": inputs,
                "outputs": outputs,
            },
        )

    async def v2_model_ready(self, request: Request) -> Reply:
        if not self.engine.is_ready:
            raise NotReady(f"model {self.engine.api.name!r}")
        return _json(200, {"name": self.engine.api.name, "ready": True})

    async def v2_infer(self, request: Request) -> Reply:
        header_length = binary_tensors.parse_header_length(request.headers.get(binary_tensors.HEADER))
        if (
            header_length is None
            and request.content_type
            and not codec.is_json(codec.media_type(request.content_type)[0])
        ):
            raise UnsupportedMediaType(
                request.content_type, ["application/json", f"any type with the {binary_tensors.HEADER} header"]
            )
        body = await _read_body(request, self.engine.api.max_body_size)
        tail = None
        if header_length is not None:
            body, tail = binary_tensors.split_body(body, header_length)
        inference = codec.parse_json(body)
        decoded = tensors.decode_inputs(inference, tail)
        payload = self._tensor_payload(decoded, request.request_id)
        result = await self.engine.predict(payload, *self._context(request), request.request_id)
        try:
            engine = self.engine
            outputs = tensors.encode_outputs(
                result, decoded.wanted, engine.default_output, decoded.is_binary, engine.output_names
            )
        except (TypeError, ValueError) as exc:
            log.error("request %s: the result cannot be sent as tensors: %s", request.request_id, exc)
            raise ShipyardError("the handler's result could not be encoded as tensors; see the API's log") from None
        answer: dict[str, Any] = {"model_name": self.engine.api.name, "outputs": outputs.tensors}
        if self.engine.model.version is not None:
            answer["model_version"] = str(self.engine.model.version)
        if isinstance(inference, dict) and inference.get("id") is not None:
            answer["id"] = inference["id"]
        if not outputs.blobs:
            return _json(200, answer)
        header = codec.dump_json(answer)
        length = ((binary_tensors.HEADER.encode(), str(len(header)).encode()),)
        return Reply(200, header + b"".join(outputs.blobs), BINARY_TYPE, length)

    def _tensor_payload(self, decoded: tensors.Decoded, request_id: str) -> Any:
        """With a schema every request is checked: inputs named after fields are columns of records; for a
        built-in handler, one tensor named after no field holds the features in order, row by row."""
        checker = self.engine.schema
        if checker is None:
            return decoded.payload
        arrays, fields = decoded.arrays, checker.schema.fields
        features = self.engine.matrix_features
        if features is not None and len(arrays) == 1 and not arrays.keys() & fields.keys():
            name, matrix = next(iter(arrays.items()))
            self._check_schema(tensors.matrix_records(name, matrix, features), request_id)
            return matrix
        columns = tensors.field_columns(arrays, fields)
        checker.check_inputs(arrays.keys())
        self._check_schema(tensors.column_records(columns), request_id)
        if len(columns) == len(arrays):
            return columns
        return {name: columns.get(name, array) for name, array in arrays.items()}  # extra_fields: allow


_ID_PREFIX = secrets.token_hex(12)  # unique per process; the counter makes ids unique within it
_ID_COUNTER = itertools.count()
_V2_TYPES = {"float": "FP64", "int": "INT64", "str": "BYTES", "bool": "BOOL"}


def _request(scope: Scope, receive: Receive) -> Request:
    request_id = content_type = content_encoding = None
    content_length = None
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value.decode("latin-1")
        elif name == b"content-length":
            content_length = int(value) if value.isdigit() else None
        elif name == b"x-request-id" and 0 < len(value) <= 128 and value.isascii():
            request_id = value.decode("ascii")
        elif name == b"content-encoding":
            content_encoding = value.decode("latin-1")
    return Request(
        scope,
        receive,
        request_id or f"{_ID_PREFIX}{next(_ID_COUNTER):08x}",
        content_type,
        content_length,
        {},
        content_encoding,
    )


async def _read_body(request: Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(request.content_length, limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(size, limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            return codec.decompress(body, request.content_encoding, limit) if request.content_encoding else body


def _json(status: int, value: Any) -> Reply:
    return Reply(status, codec.dump_json(value))


def error_reply(error: ShipyardError, request_id: str, v2: bool = False) -> Reply:
    """`{"error": {type, message, request_id}}`; on the /v2 routes the Open Inference Protocol's
    `{"error": "message"}` (the request id is in the X-Request-ID header)."""
    body: dict[str, Any] = {"error": error.message} if v2 else {"error": {**error.to_dict(), "request_id": request_id}}
    headers: tuple[tuple[bytes, bytes], ...] = ()
    if error.status_code == 503:
        headers = ((b"retry-after", str(getattr(error, "retry_after", 1)).encode()),)
    elif isinstance(error, MethodNotAllowed) and error.allowed:
        headers = ((b"allow", ", ".join(error.allowed).encode()),)
    return Reply(error.status_code, codec.dump_json(body), JSON_TYPE, headers)


def _is_v2(scope: Scope) -> bool:
    path: str = scope["path"]
    return path == "/v2" or path.startswith("/v2/")


def _other_method(method: str, methods: dict[str, Endpoint], path: str) -> Endpoint:
    """HEAD is answered as GET without the body (uvicorn drops it); any other method is a 405."""
    if method == "HEAD" and "GET" in methods:
        return methods["GET"]
    allowed = [*methods, "HEAD"] if "GET" in methods else list(methods)
    raise MethodNotAllowed(f"{method} is not allowed on {path}; use {', '.join(allowed)}", allowed)


def _uncancel() -> None:
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


async def _send(reply: Reply | Response, request: Request, send: Send) -> int:
    if isinstance(reply, Response):
        reply.headers["x-request-id"] = request.request_id
        await reply(request.scope, request.receive, send)  # type: ignore[arg-type]
        return reply.status_code
    headers = [
        (b"content-type", reply.content_type),
        (b"content-length", str(len(reply.body)).encode()),
        (b"x-request-id", request.request_id.encode()),
        *reply.headers,
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})
    return reply.status
