"""Composition root of one replica: load the spec, check the handler and model, and serve with uvicorn.

Everything that can be refused before the server starts is refused here (exit 2); a handler whose __init__
raises is reported once the server is up (readyz answers 503 while it loads) and the process exits 1.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import prometheus_client
import uvicorn

from shipyard.errors import ConfigError, PathOutsideProject
from shipyard.registry.manifest import build_manifest
from shipyard.serving.app import ReplicaApp
from shipyard.serving.engine import Engine, ModelInfo
from shipyard.serving.handler import HandlerRef, import_handler_class
from shipyard.serving.metrics import ReplicaMetrics
from shipyard.spec import BatchAPI, Project, RealtimeAPI, load

log = logging.getLogger("shipyard.replica")


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
    if name is None:
        if len(realtime) != 1:
            raise ConfigError([f"{project.source}: pick an API with --api NAME; RealtimeAPIs here: {names}"])
        return realtime[0]
    for api in realtime:
        if api.name == name:
            return api
    raise ConfigError([f"{project.source}: no RealtimeAPI named {name!r}; RealtimeAPIs here: {names}"])


def resolve_model(project: Project, api: RealtimeAPI | BatchAPI) -> ModelInfo:
    """The model as a local path with its digest; a project path must stay inside the project."""
    if api.model is None:
        return ModelInfo(source=None, path=None, digest=None)
    if api.model.startswith("models:/"):
        from shipyard.registry import resolve_model_ref

        resolved = resolve_model_ref(api.model)
        return ModelInfo(api.model, str(resolved.path), resolved.digest, resolved.name, resolved.version)
    root = Path(project.directory)
    path = (root / api.model).resolve()
    if not path.is_relative_to(root.resolve()):
        raise PathOutsideProject(f"{api.name}.model", api.model, project.directory)
    if not path.exists():
        raise ConfigError(
            [
                f"{project.source}: {api.name}.model: {api.model!r} does not exist in {project.directory}; "
                "create it (train the model first) or fix the path"
            ]
        )
    return ModelInfo(api.model, str(path), build_manifest(path).digest)


def build_engine(project: Project, api: RealtimeAPI) -> Engine:
    ref = HandlerRef(api.handler, Path(project.directory))
    handler_class = import_handler_class(ref)
    model = resolve_model(project, api)
    return Engine(api, handler_class, ref, model, ReplicaMetrics(api.name))


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM/SIGINT after a graceful shutdown; a drained replica should exit 0."""

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
        self.should_exit = True


def serve(options: ServeOptions) -> int:
    """Serve one API in the foreground until SIGINT/SIGTERM; returns the process exit code."""
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call] # this process is one replica; `_created` series are noise
    project = load(options.project)
    api = pick_api(project, options.api)
    engine = build_engine(project, api)
    server: _Server | None = None

    def stop_after_failed_load() -> None:
        if server is not None:
            server.should_exit = True

    app = ReplicaApp(engine, on_load_failed=stop_after_failed_load)
    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(api.grace_period) or 1,
        log_level=options.log_level,
        loop="uvloop" if _has("uvloop") else "asyncio",
        http="httptools" if _has("httptools") else "h11",
        server_header=False,
    )
    server = _Server(config)
    log.info("serving %s on http://%s:%d", api.name, options.host, options.port)
    server.run()
    return 1 if engine.load_error else 0


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True
