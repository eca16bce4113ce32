"""The control loop with a real store, supervisor, replica process and gateway: a locked store stops nothing."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, event

from shipyard.runtime.local import release as releases
from shipyard.runtime.local import state
from shipyard.runtime.local.daemon import Daemon, Options, Shutdown, release_finder
from shipyard.runtime.local.gateway import Gateway, Report, RouteTable
from shipyard.runtime.local.home import Home
from shipyard.runtime.local.supervisor import Supervisor
from shipyard.runtime.local.types import ReplicaState
from shipyard.store import create_store_engine, migrate, read_transaction, write_transaction
from tests.runtime.local.test_gateway import call
from tests.serving.conftest import make_project

ECHO = """
- name: echo
  handler: handlers.py:Echo
  grace_period: 2s
"""


@dataclass
class Running:
    daemon: Daemon
    gateway: Gateway
    database: Path
    engine: Engine
    home: Home

    def wait_for(self, check: Callable[[], bool], what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.05)
        raise AssertionError(f"{what} not reached within {timeout}s")

    def ready(self) -> list[state.ReplicaRecord]:
        return [r for r in self.daemon.view.replicas if r.status.state is ReplicaState.ready]


def impatient_engine(database: Path) -> Engine:
    """The store, with a busy timeout of 100 ms instead of 30 s, so that a held lock fails writes quickly."""
    engine = create_store_engine(f"sqlite:///{database}")

    @event.listens_for(engine, "connect")
    def _impatient(connection: sqlite3.Connection, _record: object) -> None:
        connection.execute("PRAGMA busy_timeout=100")

    return engine


@pytest.fixture
def idle(tmp_path: Path) -> Iterator[Running]:
    """A daemon over a store with one deployed API, its loop not started."""
    home = Home(tmp_path / "home")
    home.logs.mkdir(parents=True)
    database = home.root / "shipyard.db"
    engine = impatient_engine(database)
    migrate(engine)
    project = make_project(tmp_path / "project", ECHO)
    prepared = releases.prepare(project)
    with write_transaction(engine) as connection:
        for found in prepared.releases:
            spec_file = releases.snapshot(found, prepared.project, home.releases)
            state.record_release(connection, found, str(spec_file), str(project), time.time())
    gateway = Gateway()
    supervisor = Supervisor(release_finder(engine), home.logs)
    daemon = Daemon(engine, supervisor, gateway.update, home, Options(tick=0.1, autoscale_every=0.2))
    try:
        yield Running(daemon, gateway, database, engine, home)
    finally:
        engine.dispose()


@pytest.fixture
def running(idle: Running) -> Iterator[Running]:
    thread = threading.Thread(target=idle.daemon.run, name="control-loop")
    thread.start()
    try:
        yield idle
    finally:
        idle.daemon.notify(Shutdown("test over"))
        thread.join(30)


def test_a_deployed_api_is_503_never_404_before_the_first_tick_and_after_the_last(idle: Running) -> None:
    idle.gateway.update(idle.daemon.routes_from_store())  # as the server does before it serves
    early = asyncio.run(call(idle.gateway, "/echo", b"{}"))
    assert early["status"] == 503 and early["headers"][b"retry-after"] == b"1"
    assert b"the daemon is starting" in early["body"]
    thread = threading.Thread(target=idle.daemon.run, name="control-loop")
    thread.start()
    try:
        idle.wait_for(lambda: len(idle.ready()) == 1, "a ready replica")
        assert list(idle.gateway.lanes["echo"].route.replicas) == [idle.ready()[0].status.id]
    finally:
        idle.daemon.notify(Shutdown("test over"))
        thread.join(30)
    late = asyncio.run(call(idle.gateway, "/echo", b"{}"))  # its replicas are gone; the gateway still knows it
    assert late["status"] == 503 and b"shutting down" in late["body"]
    assert asyncio.run(call(idle.gateway, "/nope", b"{}"))["status"] == 404


def test_a_locked_store_stops_no_replica_and_the_loop_recovers(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    running.wait_for(lambda: len(running.ready()) == 1, "a ready replica")
    [replica] = running.ready()
    url = f"http://127.0.0.1:{replica.port}"
    caplog.set_level(logging.INFO, logger="shipyard.daemon")
    holder = sqlite3.connect(running.database, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # as a backup tool or another writer holding the database
    try:
        running.wait_for(lambda: "control loop tick failed" in caplog.text, "a failed tick", timeout=10)
        time.sleep(1.5)  # many ticks fail meanwhile
        assert httpx.post(f"{url}/predict", json={"x": 1}).json() == {"echo": {"x": 1}}
        assert list(running.gateway.lanes["echo"].route.replicas) == [replica.status.id]  # still routed
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    failures = [r for r in caplog.records if r.levelno == logging.ERROR and "tick failed" in r.getMessage()]
    assert len(failures) == 1 and "database is locked" in failures[0].getMessage()  # once, not once a tick
    running.wait_for(lambda: "control loop recovered" in caplog.text, "recovery")
    assert replica.pid is not None
    os.kill(replica.pid, signal.SIGKILL)  # the recovered loop still does its job
    running.wait_for(lambda: [r.pid for r in running.ready()] not in ([], [replica.pid]), "a restarted replica")
    engine = create_store_engine(f"sqlite:///{running.database}")
    with read_transaction(engine) as connection:
        kinds = [e.kind for e in state.recent_events(connection, "echo")]
    engine.dispose()
    assert "crashed" in kinds and "restarting" in kinds


def test_a_gateway_gone_before_the_loop_stops_leaves_no_replica_running(idle: Running) -> None:
    gone = threading.Event()

    def exchange(table: RouteTable) -> Report:
        if gone.is_set():  # as when the servers stopped first and the gateway's event loop is closed
            raise RuntimeError("Event loop is closed")
        return idle.gateway.update(table)

    supervisor = Supervisor(release_finder(idle.engine), idle.home.logs)
    daemon = Daemon(idle.engine, supervisor, exchange, idle.home, Options(tick=0.1))
    thread = threading.Thread(target=daemon.run, name="control-loop")
    thread.start()
    try:
        idle.wait_for(lambda: any(r.status.state is ReplicaState.ready for r in daemon.view.replicas), "ready")
        [replica] = daemon.view.replicas
    finally:
        gone.set()
        daemon.notify(Shutdown("servers stopped"))
        thread.join(30)
    assert replica.pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(replica.pid, 0)  # stopped (and reaped) all the same
