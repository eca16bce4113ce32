"""The supervisor: runs replica processes, checks their health, and carries out the controller's actions.

Each replica is `shipyard serve PROJECT --api NAME --host 127.0.0.1 --port PORT` in its own session (so a
Ctrl-C or the daemon's death does not reach it), logging to its own file. `observe()` reaps exits, takes
the `/readyz` answers that came in (the checks run beside the loop, see `probes`; what an answer means
is `health`'s) and rotates logs; `apply(actions)` and `signal_drained()` are the only code that starts or
signals processes. A drained replica gets SIGTERM only once the gateway has no request in flight to it
(or after its API's `timeout`, which no such request outlives), so that it never stops with a request
the gateway sent still unanswered.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from shipyard.errors import ShipyardError
from shipyard.runtime.local.health import Check, CheckPolicy, Health, judged
from shipyard.runtime.local.probes import Prober
from shipyard.runtime.local.replica_logs import fatal_errors, log_size, log_tail, rotate_log
from shipyard.runtime.local.state import ReplicaRecord
from shipyard.runtime.local.types import (
    Action,
    Backoff,
    Drain,
    Fail,
    Forget,
    Kill,
    Observed,
    ReplicaState,
    ReplicaStatus,
    Restart,
    Start,
)

log = logging.getLogger("shipyard.supervisor")

_PORT_TAKEN = "address already in use"
_JOB_WORKER = b"shipyard.jobs.worker"


UNKNOWN_EXIT = -1024
"""The exit code of a process that ended but whose status we could not collect (it was not our child)."""


class Process(Protocol):
    """What the supervisor needs of a replica's process: a child it launched, or one it adopted."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def send_signal(self, sig: int) -> None: ...

    def wait(self, timeout: float | None = None) -> int: ...


class Adopted:
    """A replica process launched by an earlier daemon: not our child, so it is watched through /proc.

    Its exit status goes to whoever reaps it (init), so it is unknown here: `poll` says only that it ended.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and not is_running(self.pid):
            self.returncode = UNKNOWN_EXIT
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                self.returncode = UNKNOWN_EXIT

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(0.02)
        return code

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


@dataclass(frozen=True)
class Release:
    """What the replicas of one API version run: the project directory, how long they may drain, and how long
    one request may take."""

    project: Path
    grace_period: float
    timeout: float = 60.0


Releases = Callable[[str, str], Release]
"""Finds the release of (api, version); the daemon backs it with the store."""


@dataclass
class Replica:
    status: ReplicaStatus
    port: int
    log: Path
    process: Process | None
    is_stopping: bool = False
    """We signalled it: its exit is a stop, not a crash."""
    health: Health = field(default_factory=Health)
    """Its recent /readyz checks; a ready replica that is not answering gets no traffic."""
    is_signalled: bool = False
    """A draining replica was sent SIGTERM (it waits for the gateway's requests to it first)."""
    log_offset: int = 0
    """Size of its log when its current process started: errors before it belong to earlier runs."""
    launches: int = 0
    """Processes launched for it; a health check's answer counts only for the process it was sent to."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_answering(self) -> bool:
        return self.health.is_answering

    @property
    def probe_key(self) -> tuple[str, int]:
        return (self.status.id, self.launches)


class Supervisor:
    def __init__(
        self,
        releases: Releases,
        logs: Path,
        *,
        clock: Callable[[], float] = time.time,
        probe_timeout: float = 1.0,
        probe_wait: float = 0.2,
    ) -> None:
        self._releases = releases
        self._logs = logs
        self._clock = clock
        self._default_policy = CheckPolicy(timeout=probe_timeout)
        self._probe_wait = probe_wait
        """Longest one `observe` waits for the health checks it started; later answers count at the next."""
        self._prober = Prober()
        self.replicas: dict[str, Replica] = {}

    def observe(self, policies: Mapping[str, CheckPolicy] | None = None) -> Observed:
        """Reap exits, check health (without waiting on a replica that does not answer), rotate logs, and
        report every replica as of now. `policies` gives each API's health-check settings."""
        now = self._clock()
        policies = policies or {}
        current = list(self.replicas.values())
        started = []
        for replica in current:
            replica.status = self._reap(replica, now)
            policy = policies.get(replica.status.api, self._default_policy)
            if self._is_checked(replica) and self._prober.start(replica.probe_key, replica.url, policy.timeout):
                started.append(replica.probe_key)
        answers = self._prober.collect(started, self._probe_wait)
        now = self._clock()
        for replica in current:
            check = answers.get(replica.probe_key)
            if check is not None and self._is_checked(replica):
                replica.status = self._judge(replica, check, now, policies.get(replica.status.api))
            if rotate_log(replica.log):
                replica.log_offset = 0
        return Observed(now, tuple(replica.status for replica in self.replicas.values()))

    def is_checking(self, replica_id: str) -> bool:
        """Whether a health check of the replica is out (sent, and not answered yet)."""
        replica = self.replicas.get(replica_id)
        return replica is not None and self._prober.is_out(replica.probe_key)

    def is_coming(self, api: str, leaving: Collection[str] = ()) -> bool:
        """Whether a replica of `api` that gets no traffic now may get some soon: one is starting, or one is
        ready but fails its health checks (slow, say, rather than gone), so waiting requests wait for it."""
        return any(
            r.status.api == api
            and r.status.id not in leaving
            and (
                r.status.state is ReplicaState.starting or (r.status.state is ReplicaState.ready and not r.is_answering)
            )
            for r in self.replicas.values()
        )

    def signal_drained(self, busy: Mapping[str, int]) -> None:
        """SIGTERM each draining replica that the gateway has no request in flight to (`busy`: replica → count),
        or that has waited its API's `timeout` for them (none of them can take longer); it then has its
        grace period to finish."""
        now = self._clock()
        for replica in self.replicas.values():
            status = replica.status
            if status.state is not ReplicaState.draining or replica.is_signalled:
                continue
            waited = now - (status.draining_since if status.draining_since is not None else now)
            if busy.get(status.id, 0) == 0 or waited >= status.request_timeout:
                replica.is_signalled = True
                self._signal(replica, signal.SIGTERM)

    def adopt(self, records: Iterable[ReplicaRecord]) -> None:
        """Take over the replicas an earlier daemon ran: live processes are kept, dead ones count as exits."""
        now = self._clock()
        for record in records:
            alive = record.pid is not None and is_replica_process(record.pid, record.port)
            process = Adopted(record.pid) if alive and record.pid is not None else None
            status = record.status
            if process is None and status.state in (ReplicaState.starting, ReplicaState.ready):
                error = "its process ended while the daemon was not running"
                status = replace(status, state=ReplicaState.crashed, exited_at=now, last_error=error)
            elif process is None and status.state is ReplicaState.draining:
                status = replace(status, state=ReplicaState.stopped, exited_at=now)
            elif status.state is ReplicaState.ready:
                # its health clock starts at adoption: a check slower than a tick's wait must not make a
                # replica that served all along look hung for the time the daemon was down
                status = replace(status, healthy_at=now)
            status = replace(status, request_timeout=self._request_timeout(status))
            replica = Replica(status, record.port, Path(record.log), process)
            replica.is_stopping = status.state is ReplicaState.draining
            replica.log_offset = log_size(replica.log)  # what its process logs from now on
            self.replicas[status.id] = replica

    def _request_timeout(self, status: ReplicaStatus) -> float:
        try:
            return self._releases(status.api, status.version).timeout
        except ShipyardError:  # its release is gone: it only drains, with the default patience
            return status.request_timeout

    def records(self) -> list[ReplicaRecord]:
        """Every replica as the store keeps it, so that a restarted daemon can adopt them."""
        return [
            ReplicaRecord(r.status, r.process.pid if r.process else None, r.port, str(r.log))
            for r in self.replicas.values()
        ]

    def ready(self, api: str) -> dict[str, str]:
        """URL of each ready replica of `api`, by replica id: where the gateway may send traffic."""
        return {
            replica.status.id: replica.url
            for replica in self.replicas.values()
            if replica.status.api == api and replica.status.state is ReplicaState.ready and replica.is_answering
        }

    def apply(self, actions: Iterable[Action]) -> None:
        now = self._clock()
        for action in actions:
            log.info("%s", action)
            match action:
                case Start():
                    self._start(action, now)
                case Restart():
                    self._restart(self.replicas[action.replica], now)
                case Drain():
                    self._drain(self.replicas[action.replica], now)
                case Kill():
                    self._signal(self.replicas[action.replica], signal.SIGKILL)
                case Fail():
                    self._fail(self.replicas[action.replica], action.error, now)
                case Backoff():
                    self._backoff(self.replicas[action.replica], action)
                case Forget():
                    self._forget(action.replica)

    def close(self, timeout: float = 30.0) -> None:
        """Drain every replica, wait for them up to `timeout`, kill the rest."""
        now = self._clock()
        for replica in self.replicas.values():
            self._drain(replica, now)
            if replica.status.state is ReplicaState.draining:
                replica.is_signalled = True
                self._signal(replica, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for replica in self.replicas.values():
            if replica.process is not None:
                _wait_or_kill(replica.process, deadline)
        self.replicas.clear()
        self._prober.close()

    def _start(self, action: Start, now: float) -> None:
        replica_id = f"{action.api}-{secrets.token_hex(3)}"
        release = self._releases(action.api, action.version)
        status = ReplicaStatus(
            replica_id,
            action.api,
            action.version,
            ReplicaState.starting,
            now,
            grace_period=release.grace_period,
            request_timeout=release.timeout,
        )
        path = self._logs / action.api / f"{replica_id}.log"
        replica = Replica(status, 0, path, None)
        self.replicas[replica_id] = replica
        self._launch(replica, release)

    def _restart(self, replica: Replica, now: float) -> None:
        status = replica.status
        replica.status = replace(
            status,
            state=ReplicaState.starting,
            started_at=now,
            healthy_at=None,
            exited_at=None,
            restart_at=None,
            ready_at=None,
            failed_checks=0,
        )
        self._launch(replica, self._releases(status.api, status.version))

    def _launch(self, replica: Replica, release: Release) -> None:
        replica.port = _free_port()
        replica.launches += 1
        replica.health = Health()
        replica.is_stopping = replica.is_signalled = False
        replica.log.parent.mkdir(parents=True, exist_ok=True)
        replica.log_offset = log_size(replica.log)
        command = [
            sys.executable,
            "-m",
            "shipyard",
            "serve",
            str(release.project),
            "--api",
            replica.status.api,
        ]
        command += ["--host", "127.0.0.1", "--port", str(replica.port)]
        with open(replica.log, "ab") as out:
            replica.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def _drain(self, replica: Replica, now: float) -> None:
        """Out of the gateway now; SIGTERM comes with `signal_drained`, once the gateway's requests are answered."""
        replica.health = Health()
        replica.is_stopping = True  # its exit from now on is a stop, not a crash
        if replica.status.state in (ReplicaState.starting, ReplicaState.ready):
            replica.status = replace(replica.status, state=ReplicaState.draining, draining_since=now)

    def _fail(self, replica: Replica, error: str, now: float) -> None:
        self._kill(replica)
        replica.status = replace(replica.status, state=ReplicaState.crashed, last_error=error, exited_at=now)

    def _backoff(self, replica: Replica, action: Backoff) -> None:
        replica.status = replace(
            replica.status,
            state=ReplicaState.crash_looping,
            restarts=action.attempt,
            restart_at=action.restart_at,
        )

    def _forget(self, replica_id: str) -> None:
        self._kill(self.replicas.pop(replica_id))  # a record we drop must not leave a process behind

    def _kill(self, replica: Replica) -> None:
        self._signal(replica, signal.SIGKILL)
        if replica.process is not None:
            replica.process.wait()  # SIGKILL cannot be ignored; reap it now rather than leave a zombie

    def _signal(self, replica: Replica, sig: signal.Signals) -> None:
        replica.is_stopping = True
        if replica.process is not None and replica.process.poll() is None:
            replica.process.send_signal(sig)

    def _reap(self, replica: Replica, now: float) -> ReplicaStatus:
        """Its status after collecting its process's exit, if it ended."""
        status = replica.status
        code = replica.process.poll() if replica.process is not None else None
        if code is None or status.state not in (ReplicaState.starting, ReplicaState.ready, ReplicaState.draining):
            return status
        replica.health = Health()
        if replica.is_stopping:
            return replace(status, state=ReplicaState.stopped, exited_at=now)
        if status.state is ReplicaState.starting and _PORT_TAKEN in _last_error(replica, code):
            # another process took the free port between our choice and its bind: try a new one
            self._launch(replica, self._releases(status.api, status.version))
            return status
        return replace(status, state=ReplicaState.crashed, exited_at=now, last_error=_last_error(replica, code))

    @staticmethod
    def _is_checked(replica: Replica) -> bool:
        running = replica.process is not None and replica.process.poll() is None
        return (
            running and not replica.is_stopping and replica.status.state in (ReplicaState.starting, ReplicaState.ready)
        )

    def _judge(self, replica: Replica, check: Check, now: float, policy: CheckPolicy | None) -> ReplicaStatus:
        """Its status after one health check answered (see `health.judged`)."""
        threshold = (policy or self._default_policy).failure_threshold
        replica.health = judged(replica.health, check, threshold)
        status = replica.status
        if check is Check.ok:
            ready_at = status.ready_at if status.state is ReplicaState.ready else now
            return replace(status, state=ReplicaState.ready, healthy_at=now, ready_at=ready_at, failed_checks=0)
        if status.state is ReplicaState.ready:
            return replace(status, failed_checks=replica.health.failures)
        return status


def _last_error(replica: Replica, code: int) -> str:
    """The replica's exit, with the last fatal error its current process logged: what `get` shows for a crash."""
    errors = fatal_errors(log_tail(replica.log, replica.log_offset))
    exit_text = exit_description(code)
    return f"{exit_text}: {errors[-1]}" if errors else exit_text


def exit_description(code: int) -> str:
    if code == UNKNOWN_EXIT:
        return "exit status unknown (adopted)"
    return f"killed by signal {-code}" if code < 0 else f"exited with code {code}"


def is_running(pid: int) -> bool:
    """Whether `pid` is a process that has not exited (a zombie has)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            return file.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def is_replica_process(pid: int, port: int) -> bool:
    """Whether `pid` still runs `shipyard serve ... --port PORT` (and is not a new process with a reused pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            arguments = file.read().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    return is_running(pid) and b"serve" in arguments and str(port).encode() in arguments


def stray_replicas(snapshots: Path, known: Iterable[int]) -> list[int]:
    """Pids of replica processes serving a snapshot under `snapshots` that no record knows.

    A daemon killed between launching a replica and storing it leaves one; the next daemon stops it
    rather than run a second copy next to its replacement.
    """
    marker = str(snapshots).encode()
    skip = set(known) | {os.getpid()}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if is_replica_command(arguments, marker) and is_running(int(entry.name)):
            found.append(int(entry.name))
    return found


def is_replica_command(arguments: Sequence[bytes], snapshots: bytes) -> bool:
    """A `shipyard serve` of a release snapshot; never a batch-job worker, which the job runner owns (a
    worker left by a killed daemon finishes its batch, and the next daemon's runner continues the job)."""
    if _JOB_WORKER in arguments:
        return False
    return b"serve" in arguments and any(argument.startswith(snapshots) for argument in arguments)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_or_kill(process: Process, deadline: float) -> None:
    try:
        process.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)  # it did not finish draining in time
        process.wait()
