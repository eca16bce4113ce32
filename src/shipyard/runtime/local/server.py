"""Composition root of the daemon: store, supervisor, control loop, control API and gateway in one process.

The gateway lives in the daemon's process, on the main thread's event loop, and the control loop runs
on a thread beside it. One process means the loop takes a replica out of the routes (and waits for the
gateway to confirm) before it signals the replica to drain, with no IPC in between; the autoscaler
reads exact in-flight counts; and there is one thing to start, adopt and stop. The loop's work is
mostly waiting on processes, sockets and SQLite, so it costs the gateway little of the GIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import prometheus_client
import uvicorn
from sqlalchemy import Engine

from shipyard.errors import ShipyardError
from shipyard.runtime.local.control import Context, build_app
from shipyard.runtime.local.daemon import Daemon, Demand, Options, Shutdown, release_finder
from shipyard.runtime.local.gateway import Gateway, Report, RouteTable
from shipyard.runtime.local.home import Address, Home
from shipyard.runtime.local.jobs_host import JobsHost
from shipyard.runtime.local.supervisor import Supervisor
from shipyard.settings import Settings
from shipyard.store import create_store_engine, migrate

log = logging.getLogger("shipyard.daemon")


class PortInUse(ShipyardError):
    status_code = 409

    def __init__(self, what: str, host: str, port: int, flag: str) -> None:
        super().__init__(f"{what} port {port} on {host} is in use; stop what uses it or choose another with {flag}")


@dataclass(frozen=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 7070
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    log_level: str = "info"
    daemon: Options = field(default_factory=Options)


class _Server(uvicorn.Server):
    """Signals belong to the daemon, which drains the replicas before the servers stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def run(settings: Settings, options: ServerOptions) -> int:
    """Run the daemon in the foreground until `shipyard down`, SIGTERM or Ctrl-C; returns the exit code."""
    home = Home(settings.home)
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call] # `_created` series are noise
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per health check otherwise
    with home.lock():
        control_socket = _bind(options.host, options.port, "control API", "--port")
        gateway_socket = _bind(options.gateway_host, options.gateway_port, "gateway", "--gateway-port")
        engine = create_store_engine(settings.database_url)
        migrate(engine)
        try:
            return _serve(settings, options, home, control_socket, gateway_socket, engine)
        finally:
            engine.dispose()
            home.clear_address()


def _serve(
    settings: Settings,
    options: ServerOptions,
    home: Home,
    control_socket: socket.socket,
    gateway_socket: socket.socket,
    engine: Engine,
) -> int:
    loop = _new_loop()
    gateway = Gateway()

    def exchange(table: RouteTable) -> Report:
        async def update() -> Report:
            return gateway.update(table)

        return asyncio.run_coroutine_threadsafe(update(), loop).result(timeout=30)

    supervisor = Supervisor(release_finder(engine), home.logs)
    jobs = JobsHost(engine, settings.home)
    daemon = Daemon(engine, supervisor, exchange, home, options.daemon, on_stop=jobs.should_exit.set)
    gateway.on_demand = lambda api: daemon.notify(Demand(api))  # an API at zero asks the loop for a replica
    url = f"http://{options.host}:{control_socket.getsockname()[1]}"
    gateway_url = f"http://{options.gateway_host}:{gateway_socket.getsockname()[1]}"
    context = Context(engine, daemon, home, home.token(), url, gateway_url, time.time(), settings)
    control = _Server(_config(build_app(context), options.log_level))
    front = _Server(_config(gateway, options.log_level))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.on_signal, sig)
    failed = threading.Event()

    def control_loop() -> None:
        try:
            daemon.run()
        except Exception:
            log.exception("the control loop failed")
            failed.set()
        finally:
            control.should_exit = front.should_exit = True

    async def main() -> None:
        gateway.update(daemon.routes_from_store())  # before the first tick, a deployed API is 503, never 404
        servers = asyncio.gather(control.serve([control_socket]), front.serve([gateway_socket]))
        while not (control.started and front.started):
            await asyncio.sleep(0.01)
        home.write_address(Address(os.getpid(), url, gateway_url, context.started_at))
        threading.Thread(target=control_loop, name="control-loop", daemon=True).start()
        jobs.start()
        log.info("control API on %s, gateway on %s", url, gateway_url)
        await servers

    try:
        loop.run_until_complete(main())
    finally:
        daemon.notify(Shutdown("servers stopped"))
        jobs.stop()
        loop.close()
    return 1 if failed.is_set() else 0


def _config(app: object, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        log_config=None,
        access_log=False,
        log_level=log_level,
        lifespan="off",
        loop="none",
        http="httptools",
        server_header=False,
        date_header=False,
        proxy_headers=False,  # nothing here reads the client's address: skip the middleware on every request
        timeout_graceful_shutdown=5,
    )


def _bind(host: str, port: int, what: str, flag: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise PortInUse(what, host, port, flag) from None
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    return loop
