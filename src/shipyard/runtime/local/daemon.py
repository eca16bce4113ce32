"""The daemon's control loop: follow aliases → observe → autoscale → plan → apply, once per tick, with events.

In uvicorn's shape: `run()` loops until told to exit; signal handlers, control-API calls and the gateway
(a request for an API at zero replicas) only put an event on the queue (`notify`), which wakes the loop
early. The loop keeps no state that is not in the store or in the processes: a daemon started after
another was killed adopts its replicas. A tick that fails (the store is locked, say) is logged once per
distinct error and retried with backoff; the replicas and the gateway keep serving meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlalchemy import Engine

from shipyard.runtime.local import state
from shipyard.runtime.local.admission import APIRoute
from shipyard.runtime.local.aliases import AliasFollower, Following
from shipyard.runtime.local.controller import plan
from shipyard.runtime.local.events import PHASE_KINDS, action_events, phase_event, phases_of
from shipyard.runtime.local.gateway import Report, RouteTable, Traffic
from shipyard.runtime.local.health import CheckPolicy
from shipyard.runtime.local.home import Home
from shipyard.runtime.local.router import Splitter
from shipyard.runtime.local.scaler import Scaler
from shipyard.runtime.local.shadow import Pair, ShadowLatency
from shipyard.runtime.local.state import Deployment, Event, ReplicaRecord, ShadowStats
from shipyard.runtime.local.status import Phase, is_news, summarize
from shipyard.runtime.local.supervisor import Release, Releases, Supervisor, stray_replicas
from shipyard.runtime.local.types import (
    Action,
    Desired,
    DesiredAPI,
    Drain,
    Fail,
    Forget,
    Kill,
    Observed,
    Restart,
    Start,
    Timing,
)
from shipyard.store import read_transaction, write_transaction

log = logging.getLogger("shipyard.daemon")

Exchange = Callable[[RouteTable], Report]
"""Hands the gateway its new routes and returns what it measured (it runs on another thread)."""

_LEAVING = (Drain, Kill, Fail, Forget)


@dataclass(frozen=True)
class Wake:
    """Desired state changed (deploy, delete, refresh): reconcile now rather than at the next tick."""

    reason: str


@dataclass(frozen=True)
class Shutdown:
    reason: str


@dataclass(frozen=True)
class Demand:
    """A request waits for an API that has no replica: scale it from zero now."""

    api: str


DaemonEvent = Wake | Shutdown | Demand

_MAX_BACKOFF = 10.0
"""Longest wait between two failed ticks."""
_STARTING = "has no ready replica yet: the daemon is starting"
_STOPPING = "is not served now: the daemon is shutting down"


@dataclass(frozen=True)
class Options:
    tick: float = 0.5
    """Seconds between reconciliations."""
    autoscale_every: float = 2.0
    """Seconds between autoscaling decisions (Cortex: 10)."""
    drain_timeout: float = 30.0
    """On shutdown, how long replicas may take to finish their requests."""
    timing: Timing = field(default_factory=Timing)


@dataclass(frozen=True)
class View:
    """The latest observation, for the control API: replicas and gateway traffic."""

    at: float = 0.0
    replicas: tuple[ReplicaRecord, ...] = ()
    traffic: Mapping[str, Traffic] = field(default_factory=dict)
    shadow_latency: Mapping[Pair, ShadowLatency] = field(default_factory=dict)
    following: Mapping[str, Following] = field(default_factory=dict)
    """APIs that follow a registry alias: what it holds, and why a move to it failed."""


class Daemon:
    def __init__(
        self,
        engine: Engine,
        supervisor: Supervisor,
        exchange: Exchange,
        home: Home,
        options: Options,
        clock: Callable[[], float] = time.time,
        on_stop: Callable[[], None] = lambda: None,
    ) -> None:
        self._engine = engine
        self._supervisor = supervisor
        self._exchange = exchange
        self._home = home
        self._options = options
        self._clock = clock
        self._on_stop = on_stop
        self._events: queue.Queue[DaemonEvent] = queue.Queue()
        self._scalers: dict[str, Scaler] = {}
        self._aliases = AliasFollower(engine)
        self._phases: dict[str, Phase] = {}
        self._saved: list[ReplicaRecord] | None = None
        self._traffic: Mapping[str, Traffic] = {}
        self._demand: set[str] = set()
        self._unsaved: list[Event] = []
        self._unsaved_shadows: list[ShadowStats] = []
        self._routes = RouteTable()
        self._is_started = False
        self._failed_ticks = 0
        self._last_failure: str | None = None
        self.should_exit = False
        self.view = View()

    # -- events ---------------------------------------------------------------------------------------------

    def notify(self, event: DaemonEvent) -> None:
        """Safe from any thread and from signal handlers."""
        self._events.put(event)

    def on_signal(self, sig: int) -> None:
        self.notify(Shutdown(f"received {signal.Signals(sig).name}"))

    def _handle_events(self, timeout: float) -> None:
        try:
            event: DaemonEvent | None = self._events.get(timeout=timeout)
        except queue.Empty:
            return
        while event is not None:
            if isinstance(event, Shutdown):
                log.info("shutting down: %s", event.reason)
                self.should_exit = True
            elif isinstance(event, Demand):
                self._demand.add(event.api)
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                event = None

    # -- the loop -------------------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            while not self.should_exit:
                self._handle_events(self._tick())
        finally:
            self.stop()

    def _tick(self) -> float:
        """One guarded reconciliation; returns how long to wait before the next."""
        try:
            if not self._is_started:
                self.start()
                self._is_started = True
            self.reconcile()
        except Exception as exc:  # one failed tick must never stop the APIs: log it, back off, try again
            return self._failed(exc)
        if self._failed_ticks:
            log.info("control loop recovered after %d failed tick(s)", self._failed_ticks)
        self._failed_ticks, self._last_failure = 0, None
        return self._options.tick

    def _failed(self, exc: Exception) -> float:
        self._failed_ticks += 1
        text = f"{type(exc).__name__}: {exc}".splitlines()[0]
        delay = min(self._options.tick * 2.0 ** min(self._failed_ticks, 16), _MAX_BACKOFF)
        if text != self._last_failure:  # once per distinct error, not once per tick
            log.error(
                "control loop tick failed, replicas keep serving; retrying with backoff (up to %gs): %s",
                _MAX_BACKOFF,
                text,
            )
            log.debug("the failed tick", exc_info=exc)
            self._last_failure = text
        return delay

    def routes_from_store(self) -> RouteTable:
        """Every deployed API and splitter with no replica yet, for the gateway before the first tick: a
        request for a deployed API gets 503 with Retry-After (try again), never 404 (no such API)."""
        table = self._route_table(self._deployments(), set(), set(), self._clock())
        self._routes = _closed(table, _STARTING)
        return self._routes

    def start(self) -> None:
        """Adopt the replicas an earlier daemon left, and stop any process no record knows."""
        with read_transaction(self._engine) as connection:
            records = state.load_replicas(connection)
            past = state.load_recommendations(connection)
            phases = state.last_of_kinds(connection, PHASE_KINDS)
        self._phases = phases_of(phases)  # an API live before the restart and live after is no news
        self._supervisor.adopt(records)
        now = self._clock()
        self._scalers = {api: Scaler.resume(now, found) for api, found in past.items()}
        strays = stray_replicas(self._home.releases, [r.pid for r in records if r.pid is not None])
        for pid in strays:
            signal_pid(pid, signal.SIGKILL)
        adopted = sum(r.process is not None for r in self._supervisor.replicas.values())
        log.info("adopted %d running replica(s); stopped %d unknown one(s)", adopted, len(strays))

    def stop(self) -> None:
        self._on_stop()  # hosted work (the job runner) drains at the same time as the replicas
        deadline = time.monotonic() + self._options.drain_timeout
        try:
            self._drain_gateway(deadline)  # its APIs stay known, at 503, until the servers stop
        except Exception as exc:  # the gateway is gone already, and nothing is in flight through it
            log.warning("could not drain the gateway before stopping the replicas: %s", exc)
        self._supervisor.close(max(0.0, deadline - time.monotonic()))
        try:
            self._save_replicas()
        except Exception as exc:  # the replicas are stopped; the next daemon finds their processes gone
            log.error("could not record the stopped replicas: %s", exc)

    def _drain_gateway(self, deadline: float) -> None:
        """Take every replica out of the routes, and wait until the gateway has answered what it sent them."""
        closed = _closed(self._routes, _STOPPING)
        while self._exchange(closed).busy and time.monotonic() < deadline:
            time.sleep(0.05)

    def reconcile(self) -> None:
        deployments = self._deployments()
        moved = self._aliases.follow(deployments, self._clock())
        if moved:
            deployments = self._deployments()
        observed = self._supervisor.observe(_check_policies(deployments))
        events = moved + self._wake(deployments, observed.now)
        events += self._autoscale(deployments, observed.now)
        deployments = self._deployments() if len(events) > len(moved) else deployments
        desired = _desired(deployments)
        actions = plan(desired, observed, self._options.timing)
        leaving = {action.replica for action in actions if isinstance(action, _LEAVING)}
        starting = {a.api for a in actions if isinstance(a, Start)} | self._restarting(actions)
        self._routes = self._route_table(deployments, leaving, starting, observed.now)
        report = self._exchange(self._routes)
        self._supervisor.apply(actions)
        self._supervisor.signal_drained(report.busy)
        self._traffic = report.apis
        self._sample(deployments, report, observed.now)
        events += action_events(actions, observed)
        events += self._phase_events(desired, observed)
        self._record(events, report)
        self.view = View(
            observed.now,
            tuple(self._supervisor.records()),
            report.apis,
            report.shadow_latency,
            dict(self._aliases.following),
        )

    # -- parts of a tick ------------------------------------------------------------------------------------

    def _deployments(self) -> list[Deployment]:
        with read_transaction(self._engine) as connection:
            return state.list_deployments(connection)

    def _restarting(self, actions: Iterable[Action]) -> set[str]:
        replicas = self._supervisor.replicas
        return {replicas[a.replica].status.api for a in actions if isinstance(a, Restart) and a.replica in replicas}

    def _route_table(
        self, deployments: Sequence[Deployment], leaving: set[str], starting: set[str], now: float
    ) -> RouteTable:
        apis: dict[str, APIRoute] = {}
        splitters: dict[str, Splitter] = {}
        for deployment in deployments:
            if not deployment.is_realtime:
                splitters[deployment.name] = Splitter.of(deployment.splitter())
                continue
            spec = deployment.realtime()
            ready = {k: v for k, v in self._supervisor.ready(spec.name).items() if k not in leaving}
            expecting = spec.name in starting or self._supervisor.is_coming(spec.name, leaving)
            concurrency = spec.concurrency
            apis[spec.name] = APIRoute(
                spec.name,
                concurrency.max_concurrency,
                concurrency.max_queue_length,
                spec.timeout,
                ready,
                expecting,
                wakes=deployment.replicas == 0,
                max_body_size=spec.max_body_size,
                checked_at=now,
            )
        return RouteTable(apis, splitters)

    def _wake(self, deployments: Sequence[Deployment], now: float) -> list[Event]:
        """Scale APIs at zero that a waiting request asked for to one replica, now rather than at the next
        autoscaling decision (whose window may not even see the request yet)."""
        demanded, self._demand = self._demand, set()
        events = []
        for deployment in deployments:
            if deployment.name not in demanded or not deployment.is_realtime or deployment.replicas != 0:
                continue
            recommendation = self._scaler(deployment.name, now).woken(now)
            scaling = deployment.realtime().autoscaling
            horizon = now - max(scaling.downscale_stabilization, scaling.upscale_stabilization)
            with write_transaction(self._engine) as connection:
                state.save_recommendation(connection, deployment.name, now, recommendation.replicas, horizon)
                state.set_replicas(connection, deployment.name, 1)
            reason = "scale 0 → 1: a request is waiting for a replica"
            events.append(Event(now, deployment.name, "scaled", reason))
            log.info("%s: %s", deployment.name, reason)
        return events

    def _sample(self, deployments: Sequence[Deployment], report: Report, now: float) -> None:
        for deployment in deployments:
            traffic = report.apis.get(deployment.name)
            if deployment.is_realtime and traffic is not None:
                window = deployment.realtime().autoscaling.window
                self._scaler(deployment.name, now).sample(now, traffic.average_load, window)

    def _scaler(self, api: str, now: float) -> Scaler:
        return self._scalers.setdefault(api, Scaler(now))

    def _autoscale(self, deployments: Sequence[Deployment], now: float) -> list[Event]:
        events: list[Event] = []
        for deployment in deployments:
            if not deployment.is_realtime:
                continue
            scaler = self._scaler(deployment.name, now)
            if now - scaler.decided_at < self._options.autoscale_every:
                continue
            spec = deployment.realtime()
            decision = scaler.decide(spec, deployment.replicas, now)
            horizon = now - max(spec.autoscaling.downscale_stabilization, spec.autoscaling.upscale_stabilization)
            with write_transaction(self._engine) as connection:
                if decision.history.recommendations:
                    last = decision.history.recommendations[-1]
                    state.save_recommendation(connection, deployment.name, last.at, last.replicas, horizon)
                if decision.replicas != deployment.replicas:
                    state.set_replicas(connection, deployment.name, decision.replicas)
                    events.append(Event(now, deployment.name, "scaled", decision.reason))
                    log.info("%s: %s", deployment.name, decision.reason)
        return events

    def _phase_events(self, desired: Desired, observed: Observed) -> list[Event]:
        """An event when an API's phase changes (see `is_news`)."""
        events = []
        for api in desired.apis:
            replicas = [r for r in observed.replicas if r.api == api.name]
            summary = summarize(api, replicas)
            if not is_news(self._phases.get(api.name), summary):
                continue
            events.append(phase_event(api, summary, observed.now))
            self._phases[api.name] = summary.phase
        return events

    def _record(self, events: Sequence[Event], report: Report) -> None:
        """Write this tick's events, shadow statistics and replicas; what a failed write kept is written next."""
        records = self._supervisor.records()
        changed = records != self._saved
        self._unsaved += events
        self._unsaved_shadows += report.shadows
        if not (self._unsaved or self._unsaved_shadows or changed):
            return
        now = self._clock()
        with write_transaction(self._engine) as connection:
            state.record_events(connection, self._unsaved)
            for delta in self._unsaved_shadows:
                state.add_shadow_stats(connection, delta, now)
            if changed:
                state.save_replicas(connection, records)
        self._saved, self._unsaved, self._unsaved_shadows = records, [], []

    def _save_replicas(self) -> None:
        with write_transaction(self._engine) as connection:
            state.save_replicas(connection, self._supervisor.records())


def release_finder(engine: Engine) -> Releases:
    """The supervisor's lookup of a release: the snapshot's spec file and the drain grace period."""

    def find(api: str, version: str) -> Release:
        with read_transaction(engine) as connection:
            found = state.get_release(connection, api, version)
        return Release(Path(found.project), found.grace_period, found.timeout)

    return find


def _closed(table: RouteTable, reason: str) -> RouteTable:
    """The same APIs and splitters with no replica to route to, none coming: requests get 503 for `reason`."""
    apis = {
        name: replace(route, replicas={}, expecting=False, wakes=False, unavailable=reason)
        for name, route in table.apis.items()
    }
    return RouteTable(apis, table.splitters)


def _check_policies(deployments: Iterable[Deployment]) -> dict[str, CheckPolicy]:
    policies = {}
    for deployment in deployments:
        if deployment.is_realtime:
            check = deployment.realtime().health_check
            policies[deployment.name] = CheckPolicy(check.timeout, check.failure_threshold)
    return policies


def _desired(deployments: Iterable[Deployment]) -> Desired:
    return Desired(tuple(_desired_api(d) for d in deployments if d.is_realtime))


def _desired_api(deployment: Deployment) -> DesiredAPI:
    spec = deployment.realtime()
    return DesiredAPI(
        deployment.name,
        deployment.version,
        deployment.replicas,
        spec.update_strategy,
        startup_timeout=spec.startup_timeout,
        health_timeout=spec.health_check.unhealthy_after,
    )


def signal_pid(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
