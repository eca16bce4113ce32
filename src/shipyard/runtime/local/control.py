"""The control API on 127.0.0.1: deploy, get, delete, refresh, logs, jobs, shutdown. Every request needs the token.

Handlers change desired state in the store and then only `notify` the daemon's loop; processes are
touched by the loop alone. Errors are `{"error": {"type", "message"}}` (plus `problems` for a bad spec),
whatever went wrong: an unknown route or method too, and anything unexpected, whose traceback goes to
the daemon's log (a 500 that says where that log is).
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shipyard import __version__
from shipyard.errors import BadRequest, ConfigError, ShipyardError
from shipyard.runtime.local import release as releases
from shipyard.runtime.local import replica_logs, state, views
from shipyard.runtime.local.control_jobs import job_routes
from shipyard.runtime.local.daemon import Daemon, Shutdown, Wake
from shipyard.runtime.local.home import Home
from shipyard.settings import Settings
from shipyard.store import read_transaction, write_transaction

log = logging.getLogger("shipyard.control")


@dataclass(frozen=True)
class Context:
    engine: Engine
    daemon: Daemon
    home: Home
    token: str
    url: str
    gateway_url: str
    started_at: float
    settings: Settings


class _TokenRequired(BaseHTTPMiddleware):
    def __init__(self, app: Any, token: str) -> None:
        super().__init__(app)
        self._expected = f"Bearer {token}".encode()

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, self._expected):
            message = (
                "missing or wrong token: send 'Authorization: Bearer TOKEN'; the CLI reads it from "
                "SHIPYARD_HOME/token, or set SHIPYARD_TOKEN"
            )
            return _error_body(401, "Unauthorized", message)
        return await call_next(request)


class _InternalErrors:
    """Anything that is not a ShipyardError: the traceback goes to the daemon's log, and the caller gets the
    usual JSON error form saying where that log is (never a bare `Internal Server Error`)."""

    def __init__(self, app: ASGIApp, log_path: str) -> None:
        self.app = app
        self.log_path = log_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_started = False

        async def sending(message: Message) -> None:
            nonlocal is_started
            is_started = is_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:  # the last line of defence: log it whole, answer in the API's own form
            where = f"{scope['method']} {scope['path']}"
            log.exception("control API request %s failed", where)
            if is_started:
                raise
            what = f"{type(exc).__name__}: {exc}".splitlines()[0]
            message = f"the daemon failed on {where} ({what}); the traceback is in its log, {self.log_path}"
            await _error_body(500, "InternalError", message)(scope, receive, send)


def build_app(context: Context) -> Starlette:
    api = _Handlers(context)
    routes = [
        Route("/v1/status", api.status, methods=["GET"]),
        Route("/v1/deploy", api.deploy, methods=["POST"]),
        Route("/v1/apis", api.list_apis, methods=["GET"]),
        Route("/v1/apis/{name}", api.get_api, methods=["GET"]),
        Route("/v1/apis/{name}", api.delete_api, methods=["DELETE"]),
        Route("/v1/apis/{name}/refresh", api.refresh, methods=["POST"]),
        Route("/v1/apis/{name}/logs", api.logs, methods=["POST"]),
        Route("/v1/shutdown", api.shutdown, methods=["POST"]),
        *job_routes(context.engine, context.settings),
    ]
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(_TokenRequired, token=context.token),
            Middleware(_InternalErrors, log_path=str(context.home.daemon_log)),
        ],
        exception_handlers={ShipyardError: _shipyard_error, HTTPException: _http_error},  # type: ignore[dict-item]
    )


class _Handlers:
    def __init__(self, context: Context) -> None:
        self.context = context

    async def status(self, request: Request) -> JSONResponse:
        view = self.context.daemon.view
        with read_transaction(self.context.engine) as connection:
            names = [d.name for d in state.list_deployments(connection)]
        return JSONResponse(
            {
                "version": __version__,
                "pid": os.getpid(),
                "url": self.context.url,
                "gateway_url": self.context.gateway_url,
                "home": str(self.context.home.root),
                "started_at": self.context.started_at,
                "apis": names,
                "replicas": len(view.replicas),
            }
        )

    async def deploy(self, request: Request) -> JSONResponse:
        body = await _json_body(request)
        path = body.get("path")
        if not isinstance(path, str) or not os.path.isabs(path):
            raise BadRequest(f"deploy needs an absolute project path in 'path', got {path!r}")
        if not os.path.exists(path):
            raise BadRequest(
                f"the project path {path!r} does not exist on the daemon's machine: the daemon reads the project "
                "from its own filesystem, so deploy from the machine it runs on (or one that shares that path)"
            )
        force = body.get("force", False)
        if not isinstance(force, bool):
            raise BadRequest(f"'force' must be true or false, got {force!r}")
        changes = await run_in_threadpool(self._record, path, force)
        self.context.daemon.notify(Wake("deploy"))
        return JSONResponse({"apis": changes})

    def _record(self, path: str, force: bool) -> list[dict[str, str]]:
        prepared = releases.prepare(path)
        now = time.time()
        changes = []
        snapshots = {
            r.name: str(releases.snapshot(r, prepared.project, self.context.home.releases))
            for r in prepared.releases
            if r.is_realtime
        }
        with write_transaction(self.context.engine) as connection:
            for found in prepared.releases:
                spec_file = snapshots.get(found.name, "")
                outcome = state.record_release(connection, found, spec_file, path, now, force=force)
                changes.append({"name": found.name, "kind": found.kind, "version": found.version, "outcome": outcome})
                if outcome is not state.Outcome.unchanged:
                    text = f"{outcome.value}: version {found.version} from {prepared.project.source}"
                    state.record_events(connection, [state.Event(now, found.name, "deployed", text)])
        changes += [
            {"name": name, "kind": "BatchAPI", "version": "", "outcome": "skipped"} for name in prepared.skipped
        ]
        return changes

    async def list_apis(self, request: Request) -> JSONResponse:
        found = await run_in_threadpool(self._summaries)
        return JSONResponse({"apis": views.index(found)})

    def _summaries(self) -> dict[str, dict[str, Any]]:
        view = self.context.daemon.view
        with read_transaction(self.context.engine) as connection:
            deployments = state.list_deployments(connection)
            updates = {d.name: state.last_event_at(connection, d.name) for d in deployments}
        return views.summaries(deployments, view.replicas, view.traffic, self.context.gateway_url, updates)

    async def get_api(self, request: Request) -> JSONResponse:
        events = _positive_int(request.query_params.get("events", "20"), "events")
        return JSONResponse(await run_in_threadpool(self._detail, request.path_params["name"], events))

    def _detail(self, name: str, limit: int) -> dict[str, Any]:
        view = self.context.daemon.view
        with read_transaction(self.context.engine) as connection:
            deployment = state.get_deployment(connection, name)
            release = state.get_release(connection, name, deployment.version) if deployment.is_realtime else None
            events = state.recent_events(connection, name, limit)
            shadows = state.get_shadow_stats(connection, name)
        summaries = self._summaries()
        return views.api_detail(
            summaries[name],
            deployment,
            view.replicas,
            release,
            events,
            shadows,
            now=time.time(),
            apis=summaries,
            shadow_latency=view.shadow_latency,
            following=view.following.get(name),
        )

    async def delete_api(self, request: Request) -> JSONResponse:
        name = request.path_params["name"]
        await run_in_threadpool(self._delete, name)
        self.context.daemon.notify(Wake(f"delete {name}"))
        return JSONResponse({"deleted": name})

    def _delete(self, name: str) -> None:
        with write_transaction(self.context.engine) as connection:
            state.delete_deployment(connection, name)
            state.record_events(connection, [state.Event(time.time(), name, "deleted", "API deleted")])

    async def refresh(self, request: Request) -> JSONResponse:
        name = request.path_params["name"]
        version = await run_in_threadpool(self._refresh, name)
        self.context.daemon.notify(Wake(f"refresh {name}"))
        return JSONResponse({"name": name, "version": version})

    def _refresh(self, name: str) -> str:
        with write_transaction(self.context.engine) as connection:
            deployment = state.get_deployment(connection, name)
            if not deployment.is_realtime:
                raise BadRequest(f"{name!r} is a TrafficSplitter, which has no replicas; refresh its APIs")
            version = state.refresh(connection, name, time.time())
            text = f"rolling restart: version {version}"
            state.record_events(connection, [state.Event(time.time(), name, "refresh", text)])
        return version

    async def logs(self, request: Request) -> JSONResponse:
        name = request.path_params["name"]
        body = await _json_body(request)
        with read_transaction(self.context.engine) as connection:
            deployment = state.get_deployment(connection, name)
        if not deployment.is_realtime:
            names = ", ".join(target.name for target in deployment.splitter().apis)
            raise BadRequest(
                f"{name!r} is a TrafficSplitter: it has no replicas or logs of its own; "
                f"its APIs are {names} (see `shipyard logs API`)"
            )
        folder = self.context.home.logs / name
        replica = body.get("replica")
        if replica is not None:
            replica_logs.check_replica(folder, str(replica))
            wanted: list[str] | None = [str(replica)]
        elif body.get("all"):
            wanted = None
        else:
            wanted = [r.status.id for r in self.context.daemon.view.replicas if r.status.api == name]
        cursors = body.get("cursors") or {}
        whole_lines = bool(body.get("follow"))
        found = await run_in_threadpool(replica_logs.read_logs, folder, wanted, cursors, whole_lines=whole_lines)
        return JSONResponse(found)

    async def shutdown(self, request: Request) -> JSONResponse:
        self.context.daemon.notify(Shutdown("shipyard down"))
        return JSONResponse({"stopping": os.getpid()})


def _positive_int(value: str, name: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise BadRequest(f"{name} must be a whole number of at least 1, got {value!r}")
    return int(value)


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise BadRequest("the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def _error_body(status: int, kind: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message, **extra}}, status_code=status)


_HTTP_TYPES = {404: "NotFound", 405: "MethodNotAllowed"}


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """The router's own refusals (no such route, wrong method), in the API's error form."""
    where = f"{request.method} {request.url.path}"
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette joins a route's method set, whose order changes with the hash seed: answer a stable one.
        allowed = ", ".join(sorted(m.strip() for m in headers.get("Allow", "").split(",") if m.strip()))
        headers["Allow"] = allowed
        message = f"the control API does not answer {where}; it takes {allowed or 'other methods'} there"
    elif exc.status_code == 404:
        message = f"the control API has no route {where}; is this CLI older or newer than the daemon ({__version__})?"
    else:
        message = f"{where}: {exc.detail}"
    response = _error_body(exc.status_code, _HTTP_TYPES.get(exc.status_code, "HTTPError"), message)
    response.headers.update(headers)
    return response


async def _shipyard_error(request: Request, exc: ShipyardError) -> JSONResponse:
    extra = {"problems": exc.problems} if isinstance(exc, ConfigError) else {}
    return _error_body(exc.status_code, exc.type, exc.message, **extra)
