"""The controller's vocabulary: desired state, observed state, and the actions that close the gap.

`plan(desired, observed)` reads the first two and returns actions; `apply` carries them out. Times are
seconds on one clock (the daemon's), passed in as data so that planning stays pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from shipyard.spec.models import UpdateStrategy


class ReplicaState(StrEnum):
    starting = "starting"  #: the process runs; /readyz has not answered 200 yet
    ready = "ready"  #: /readyz answered 200: the replica takes traffic
    draining = "draining"  #: told to stop: takes no new traffic, finishes what it has
    crashed = "crashed"  #: the process ended on its own, or was killed for hanging
    crash_looping = "crash-looping"  #: crashed, and waits for its restart with backoff
    stopped = "stopped"  #: ended after it was told to stop


LIVE_STATES = frozenset({ReplicaState.starting, ReplicaState.ready, ReplicaState.crashed, ReplicaState.crash_looping})
"""States of a replica that still counts towards its API (it runs, or will run again)."""


@dataclass(frozen=True)
class DesiredAPI:
    """One realtime API as it should run: which spec version, how many replicas, how to update."""

    name: str
    version: str
    """Digest of everything a replica loads (spec, handler, model); a new digest means a rollout."""
    replicas: int
    strategy: UpdateStrategy = field(default_factory=UpdateStrategy)
    startup_timeout: float = 300.0
    """A replica not ready this long after launch has failed (its handler hangs while loading)."""
    health_timeout: float = 30.0
    """A ready replica whose health checks fail this long is hung, and is replaced."""


@dataclass(frozen=True)
class Desired:
    apis: tuple[DesiredAPI, ...] = ()

    def get(self, name: str) -> DesiredAPI | None:
        return next((api for api in self.apis if api.name == name), None)


@dataclass(frozen=True)
class ReplicaStatus:
    """What the supervisor knows of one replica."""

    id: str
    api: str
    version: str
    state: ReplicaState
    started_at: float
    """When its current process was launched."""
    healthy_at: float | None = None
    """Last time a health check answered; None if none ever did."""
    grace_period: float = 30.0
    """How long it may take to drain, from its API's spec."""
    request_timeout: float = 60.0
    """Its API's `timeout`: no request the gateway sent it takes longer, so a draining replica waits this long
    for them before it is told to stop."""
    restarts: int = 0
    """Consecutive crashes; the backoff doubles with each."""
    last_error: str | None = None
    exited_at: float | None = None
    restart_at: float | None = None
    """When a crash-looping replica is due to restart."""
    draining_since: float | None = None
    ready_at: float | None = None
    """When its current process became ready (None: not yet, or adopted, when only its start is known)."""
    failed_checks: int = 0
    """Health checks failed in a row while it is ready (it leaves the gateway at its API's failure_threshold)."""


@dataclass(frozen=True)
class Observed:
    now: float
    replicas: tuple[ReplicaStatus, ...] = ()


@dataclass(frozen=True)
class Timing:
    """How patient the controller is with crashes and drains; tests shorten these. (How long a replica may
    take to start, or fail its health checks, is the API's own: `DesiredAPI`.)"""

    backoff_base: float = 1.0
    backoff_max: float = 60.0
    backoff_reset: float = 300.0
    """A replica that ran this long before crashing starts its backoff over."""
    kill_margin: float = 5.0
    """Beyond its grace period, how long a draining replica has before it is killed."""


@dataclass(frozen=True)
class Start:
    """Launch a new replica of `version`; it takes traffic once /readyz answers 200."""

    api: str
    version: str
    reason: str = field(default="", compare=False)


@dataclass(frozen=True)
class Drain:
    """Take the replica out of the gateway, send SIGTERM, let it finish its in-flight requests."""

    replica: str
    reason: str = field(default="", compare=False)


@dataclass(frozen=True)
class Kill:
    """SIGKILL a replica that is still draining past its grace period; it ends `stopped`."""

    replica: str
    reason: str = field(default="", compare=False)


@dataclass(frozen=True)
class Fail:
    """SIGKILL a replica that hangs or never became ready; it ends `crashed` with `error`."""

    replica: str
    error: str

    @property
    def reason(self) -> str:
        return self.error


@dataclass(frozen=True)
class Backoff:
    """Record a crash: the replica is crash-looping until `restart_at`, after `attempt` crashes in a row."""

    replica: str
    attempt: int
    restart_at: float
    reason: str = field(default="", compare=False)


@dataclass(frozen=True)
class Restart:
    """Launch a crash-looping replica again, same id and version, keeping its crash count."""

    replica: str
    reason: str = field(default="", compare=False)


@dataclass(frozen=True)
class Forget:
    """Drop the record of a replica that has no process and will not run again."""

    replica: str
    reason: str = field(default="", compare=False)


Action = Start | Drain | Kill | Fail | Backoff | Restart | Forget
