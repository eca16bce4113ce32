"""The job runner: claims unfinished jobs from the store and drives each until it ends.

    runner = JobRunner(engine, home, RunnerOptions())
    runner.run(should_exit)            # uvicorn's loop: while not should_exit.wait(tick): tick()

It keeps no state the store does not have: kill it, start another, and the new one takes over the jobs
(at once on the same host, since the old process is gone; elsewhere once its hold expires). The daemon
runs one in a thread; `shipyard jobs run-scheduler` runs one in its own process; `jobs submit --wait`
runs one in the foreground for its job only. Several runners may share a store: each job has one owner.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from shipyard.jobs import records
from shipyard.jobs.driver import DriverOptions, JobDriver
from shipyard.jobs.records import RunnerIdentity

log = logging.getLogger("shipyard.jobs.runner")
_EXIT_POLL = 0.05


@dataclass(frozen=True)
class RunnerOptions:
    tick: float = 0.5
    """Seconds between two passes over the runner's jobs."""
    hold: float = 15.0
    """Seconds this runner's hold on a job lasts without a heartbeat; then another runner may take it."""
    burst: bool = False
    """Drain-and-exit: return once no job it may run is unfinished (arq's burst mode)."""
    only: frozenset[str] | None = None
    """Run only these jobs (submit --wait); None runs every job in the store."""
    driver: DriverOptions = field(default_factory=DriverOptions)


class JobRunner:
    def __init__(self, engine: Engine, home: Path, options: RunnerOptions | None = None) -> None:
        self.engine = engine
        self.home = home
        self.options = options or RunnerOptions()
        self.identity = RunnerIdentity.current()
        self.drivers: dict[str, JobDriver] = {}
        self.wake = threading.Event()
        """A worker exited (its batches are done, or it crashed): tick now rather than at the next tick."""

    def run(self, should_exit: threading.Event | None = None, on_tick: Callable[[], None] | None = None) -> None:
        should_exit = should_exit or threading.Event()
        try:
            while True:
                self.tick()
                if on_tick is not None:
                    on_tick()
                if self.options.burst and self.is_idle():
                    return
                if self._sleep(should_exit):
                    return
        finally:
            self.shutdown()

    def _sleep(self, should_exit: threading.Event) -> bool:
        """Wait one tick, or less if a worker exits; True once `should_exit` is set."""
        deadline = time.monotonic() + self.options.tick
        while not should_exit.is_set():
            remaining = deadline - time.monotonic()
            # two events to wait on: poll should_exit in short slices while waiting for a wake-up
            if remaining <= 0 or self.wake.wait(min(remaining, _EXIT_POLL)):
                break
        self.wake.clear()
        return should_exit.is_set()

    def tick(self) -> None:
        for job_id in records.claim(self.engine, self.identity, self.options.hold, self._only()):
            log.info("%s runs job %s", self.identity.name, job_id)
            self._driver(job_id).note(f"{self.identity.name} (pid {self.identity.pid}) runs this job")
        held = records.heartbeat(self.engine, self.identity, self.options.hold)
        for job_id in held:
            driver = self._driver(job_id)
            driver.step()
            if driver.finished:
                records.disown(self.engine, self.identity, job_id)
                del self.drivers[job_id]

    def _driver(self, job_id: str) -> JobDriver:
        driver = self.drivers.get(job_id)
        if driver is None:
            driver = JobDriver(self.engine, job_id, self.home, self.options.driver, self.wake)
            self.drivers[job_id] = driver
        return driver

    def _only(self) -> set[str] | None:
        return set(self.options.only) if self.options.only is not None else None

    def is_idle(self) -> bool:
        """No job this runner may run is unfinished (in any runner's hands) and it drives none."""
        if self.drivers:
            return False
        unfinished = set(records.unfinished(self.engine))
        only = self._only()
        return not (unfinished & only if only is not None else unfinished)

    def shutdown(self) -> None:
        """Drain: workers finish their batch; jobs are let go so another runner continues them at once."""
        for job_id, driver in list(self.drivers.items()):
            driver.shutdown(self.options.driver.grace)
            records.disown(self.engine, self.identity, job_id)
        self.drivers.clear()
