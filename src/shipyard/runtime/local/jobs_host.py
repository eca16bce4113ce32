"""The daemon's batch-job runner, on a thread named "jobs" beside the control loop.

The runner keeps no state the store lacks, so a daemon killed mid-job leaves nothing to clean up: its
workers finish the batch in hand and exit (they notice their parent is gone), and the next daemon's
runner takes the job over at once (its owner's pid is dead) and continues it.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from sqlalchemy import Engine

from shipyard.jobs.runner import JobRunner, RunnerOptions

log = logging.getLogger("shipyard.daemon")

_RESTART_AFTER = 5.0
"""Seconds before a runner that failed (say, the store was unreachable) runs again."""


class JobsHost:
    def __init__(self, engine: Engine, home: Path, options: RunnerOptions | None = None) -> None:
        self.runner = JobRunner(engine, home, options or RunnerOptions())
        self.should_exit = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jobs", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Workers finish their batch (SIGKILL after the runner's grace); the jobs are let go for the next runner."""
        self.should_exit.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self.should_exit.is_set():
            try:
                self.runner.run(self.should_exit)
            except Exception:
                log.exception("the job runner failed; it runs again in %gs", _RESTART_AFTER)
                self.should_exit.wait(_RESTART_AFTER)
