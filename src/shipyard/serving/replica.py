"""Composition root of one replica: load the spec, check the handler and model, and serve with uvicorn.

Everything that can be refused before the server starts is refused here (exit 2); a handler whose __init__
raises is reported once the server is up (readyz answers 503 while it loads) and the process exits 1.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import prometheus_client
import uvicorn

from shipyard.errors import ConfigError, HandlerLoadError, PathOutsideProject, ShipyardError
from shipyard.registry.manifest import build_manifest
from shipyard.serving.app import ReplicaApp
from shipyard.serving.engine import Engine, ModelInfo
from shipyard.serving.handler import HandlerRef, import_handler_class
from shipyard.serving.metrics import ReplicaMetrics
from shipyard.spec import BatchAPI, Project, RealtimeAPI, load
from shipyard.spec.loader import display_path

log = logging.getLogger("shipyard.replica")
BACKLOG = 2048


@dataclass(frozen=True)
class ServeOptions:
    project: str
    api: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "info"


def pick_api(project: Project, name: str | None) -> RealtimeAPI:
    realtime = [api for api in project.apis if isinstance(api, RealtimeAPI)]
    names = ", ".join(api.name for api in realtime) or "none"
    if not realtime:
        batch = ", ".join(api.name for api in project.apis if isinstance(api, BatchAPI))
        jobs = f"; BatchAPIs ({batch}) run as jobs: shipyard jobs submit NAME --input ... --output ..." if batch else ""
        raise ConfigError([f"{display_path(Path(project.source))}: has no RealtimeAPI to serve{jobs}"])
    if name is None:
        if len(realtime) != 1:
            raise ConfigError(
                [f"{display_path(Path(project.source))}: pick an API with --api NAME; RealtimeAPIs here: {names}"]
            )
        return realtime[0]
    for api in realtime:
        if api.name == name:
            return api
    raise ConfigError(
        [f"{display_path(Path(project.source))}: no RealtimeAPI named {name!r}; RealtimeAPIs here: {names}"]
    )


def resolve_model(project: Project, api: RealtimeAPI | BatchAPI, *, digest: bool = True) -> ModelInfo:
    """The model as a local path; a project path must stay inside the project. `digest=False` leaves a
    project model's digest to the caller (a replica hashes it while it loads, after the port is open)."""
    if api.model is None:
        return ModelInfo(source=None, path=None, digest=None)
    if api.model.startswith("models:/"):
        from shipyard.registry import resolve_model_ref

        resolved = resolve_model_ref(api.model)
        return ModelInfo(api.model, str(resolved.path), resolved.digest, resolved.name, resolved.version)
    path = project_model_path(project, api)
    shown = path.relative_to(Path(project.directory).resolve()).as_posix() or "."
    return ModelInfo(api.model, str(path), build_manifest(path).digest if digest else None, shown_path=shown)


def project_model_path(project: Project, api: RealtimeAPI | BatchAPI) -> Path:
    """The absolute path of a model inside the project; refused when it lies outside or does not exist."""
    assert api.model is not None
    root = Path(project.directory).resolve()
    path = (root / api.model).resolve()
    shown = display_path(Path(project.source))
    if not path.is_relative_to(root):
        raise ConfigError(
            [
                f"{shown}: {api.name}.model: {api.model!r} is outside the project directory {project.directory!r}; "
                "move it inside the project or use a registry reference (models:/NAME@ALIAS)"
            ]
        )
    if not path.exists():
        raise ConfigError(
            [
                f"{shown}: {api.name}.model: {api.model!r} does not exist in {project.directory}; "
                "create it (train the model first) or fix the path"
            ]
        )
    return path


def check_builtin_api(
    project: Project, api: RealtimeAPI | BatchAPI, model_path: str | None, *, model: bool = True
) -> None:
    """A built-in handler's config and model file, refused with one line each before anything is served.
    `model=False` checks the config alone (a registry model that is not fetched)."""
    if not api.is_builtin_handler:
        return
    from shipyard.serving.builtin import check_builtin

    problems = check_builtin(api.handler, api.config, model_path, check_model=model)
    if problems:
        shown = display_path(Path(project.source))
        raise ConfigError([f"{shown}: {api.name}.{problem}" for problem in problems])


def check_project(project: Project) -> None:
    """What `shipyard validate` adds to loading: every handler imports, every project model exists inside the
    project, and every built-in handler's config and model file are usable. Registry models are not fetched
    (their reference's form is checked by the loader). Raises ConfigError listing every problem."""
    problems: list[str] = []
    for api in project.apis:
        if not isinstance(api, RealtimeAPI | BatchAPI):
            continue
        try:
            import_handler_class(HandlerRef(api.handler, Path(project.directory)))
            registry = api.model is not None and api.model.startswith("models:/")
            model_path = project_model_path(project, api) if api.model is not None and not registry else None
            check_builtin_api(project, api, str(model_path) if model_path else None, model=not registry)
        except ConfigError as exc:
            problems.extend(exc.problems)
        except (HandlerLoadError, PathOutsideProject) as exc:
            problems.append(exc.message)
    if problems:
        raise ConfigError(problems)


def build_engine(project: Project, api: RealtimeAPI) -> Engine:
    ref = HandlerRef(api.handler, Path(project.directory))
    handler_class = import_handler_class(ref)
    model = resolve_model(project, api, digest=False)
    check_builtin_api(project, api, model.path)
    return Engine(api, handler_class, ref, model, ReplicaMetrics(api.name))


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, opened before anything else so that a busy port fails at once and clearly."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ShipyardError(
            f"cannot serve on host {host!r}: {exc.strerror}; pass an address of this machine such as 127.0.0.1 "
            "or 0.0.0.0"
        ) from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(BACKLOG)  # connections made while the server starts wait in the backlog, not refused
    except OSError as exc:
        sock.close()
        raise ShipyardError(_bind_problem(host, port, exc)) from None
    return sock


def _bind_problem(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is in use ({exc.strerror}); stop what listens there or pick another --port"
    if exc.errno == errno.EACCES:
        return f"port {port} on {host}: {exc.strerror}; ports below 1024 need privileges, pick another --port"
    return f"cannot listen on {host}:{port} ({exc.strerror}); pass an address of this machine with --host"


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM/SIGINT after a graceful shutdown; a drained replica should exit 0."""

    def __init__(self, config: uvicorn.Config, app: ReplicaApp) -> None:
        super().__init__(config)
        self._app = app

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl-C stops waiting for in-flight requests
            self._app.stop_forced = True
        self.should_exit = True


def serve(options: ServeOptions) -> int:
    """Serve one API in the foreground until SIGINT/SIGTERM; returns the process exit code."""
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call] # this process is one replica; `_created` series are noise
    project = load(options.project)
    api = pick_api(project, options.api)
    engine = build_engine(project, api)
    sock = bind(options.host, options.port)
    server: _Server | None = None

    def stop_after_failed_load() -> None:
        if server is not None:
            server.should_exit = True

    app = ReplicaApp(engine, on_load_failed=stop_after_failed_load)
    config = server_config(app, api, options.log_level)
    server = _Server(config, app)
    host, port = sock.getsockname()[:2]
    log.info("serving %s on http://%s:%d", api.name, _url_host(host), port)
    server.run(sockets=[sock])
    return engine.load_exit_code if engine.load_error else 0


def server_config(app: ReplicaApp, api: RealtimeAPI, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=api.grace_period,  # type: ignore[arg-type] # a float works; uvicorn annotates int
        log_level=log_level,
        loop="uvloop" if _has("uvloop") else "asyncio",
        http="httptools" if _has("httptools") else "h11",
        server_header=False,
    )


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True
