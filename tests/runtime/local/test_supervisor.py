"""The supervisor with real `shipyard serve` processes on loopback ports."""

from __future__ import annotations

import os
import shutil
import signal
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from shipyard.runtime.local.controller import plan
from shipyard.runtime.local.health import CheckPolicy
from shipyard.runtime.local.replica_logs import fatal_errors
from shipyard.runtime.local.supervisor import (
    UNKNOWN_EXIT,
    Release,
    Replica,
    Supervisor,
    _last_error,
    exit_description,
    is_replica_command,
)
from shipyard.runtime.local.types import (
    Desired,
    DesiredAPI,
    Drain,
    Forget,
    Observed,
    ReplicaState,
    ReplicaStatus,
    Start,
    Timing,
)
from shipyard.spec.models import UpdateStrategy

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures.py"
FAST = Timing(backoff_base=0.2, backoff_max=1.0)


def project(root: Path, handler: str, config: str = "{}") -> Path:
    root.mkdir(parents=True)
    shutil.copy(FIXTURES, root / "handlers.py")
    spec = f"""
        - name: echo
          handler: handlers.py:{handler}
          config: {config}
          grace_period: 5s
    """
    (root / "shipyard.yaml").write_text(textwrap.dedent(spec))
    return root


@pytest.fixture
def releases(tmp_path: Path) -> dict[str, Path]:
    return {
        "v1": project(tmp_path / "v1", "Echo"),
        "v2": project(tmp_path / "v2", "Echo", "{answer: 2}"),
        "broken": project(tmp_path / "broken", "BrokenInit"),
    }


@pytest.fixture
def supervisor(tmp_path: Path, releases: dict[str, Path]) -> Iterator[Supervisor]:
    supervisor = Supervisor(lambda api, version: Release(releases[version], 5.0), tmp_path / "logs")
    yield supervisor
    supervisor.close(timeout=10)


def wait_for(supervisor: Supervisor, condition: Callable[[Observed], bool], timeout: float = 60) -> Observed:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        observed = supervisor.observe()
        if condition(observed):
            return observed
        time.sleep(0.1)
    raise AssertionError(f"not reached within {timeout}s: {supervisor.observe()}")


def reconcile(
    supervisor: Supervisor,
    desired: Desired,
    condition: Callable[[Observed], bool],
    timeout: float = 90,
    timing: Timing = FAST,
    policies: Mapping[str, CheckPolicy] | None = None,
) -> list[Observed]:
    """The control loop, as the daemon will run it: observe, plan, apply, until `condition` holds."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        observed = supervisor.observe(policies)
        seen.append(observed)
        if condition(observed):
            return seen
        supervisor.apply(plan(desired, observed, timing))
        supervisor.signal_drained({})  # no gateway here: nothing is in flight to a draining replica
        time.sleep(0.1)
    raise AssertionError(f"not reached within {timeout}s: {supervisor.observe()}")


def states(observed: Observed, version: str | None = None) -> list[ReplicaState]:
    return [r.state for r in observed.replicas if version is None or r.version == version]


def test_a_replica_starts_serves_drains_and_is_forgotten(supervisor: Supervisor) -> None:
    supervisor.apply([Start("echo", "v1")])
    wait_for(supervisor, lambda o: states(o) == [ReplicaState.ready])
    [(replica_id, url)] = supervisor.ready("echo").items()
    assert httpx.post(f"{url}/predict", json={"x": 1}).json() == {"echo": {"x": 1}}

    supervisor.apply([Drain(replica_id)])
    assert supervisor.ready("echo") == {}
    supervisor.signal_drained({replica_id: 1})  # the gateway still waits for an answer from it: no SIGTERM yet
    time.sleep(0.5)
    assert states(supervisor.observe()) == [ReplicaState.draining]
    assert httpx.post(f"{url}/predict", json={"x": 2}).json() == {"echo": {"x": 2}}  # it still answers
    supervisor.signal_drained({})
    wait_for(supervisor, lambda o: states(o) == [ReplicaState.stopped], timeout=15)
    supervisor.apply([Forget(replica_id)])
    assert supervisor.observe().replicas == ()


def test_a_handler_that_cannot_load_is_a_crash_with_its_error(supervisor: Supervisor) -> None:
    supervisor.apply([Start("echo", "broken")])
    observed = wait_for(supervisor, lambda o: states(o) == [ReplicaState.crashed])
    error = observed.replicas[0].last_error or ""
    assert error.startswith("exited with code 1: ")
    assert "cannot open weights.bin" in error


def test_the_control_loop_restarts_a_killed_replica_then_rolls_out_without_losing_a_ready_one(
    supervisor: Supervisor,
) -> None:
    strategy = UpdateStrategy(max_surge=1, max_unavailable=0)
    v1 = Desired((DesiredAPI("echo", "v1", 2, strategy, startup_timeout=60),))
    reconcile(supervisor, v1, lambda o: states(o) == [ReplicaState.ready] * 2)

    victim = next(iter(supervisor.replicas.values()))
    assert victim.process is not None
    os.kill(victim.process.pid, signal.SIGKILL)
    seen = reconcile(supervisor, v1, lambda o: states(o) == [ReplicaState.ready] * 2 and victim.status.restarts == 1)
    crashed = [r for o in seen for r in o.replicas if r.state is ReplicaState.crashed]
    assert crashed
    assert crashed[0].id == victim.status.id
    assert crashed[0].last_error == "killed by signal 9"

    v2 = Desired((DesiredAPI("echo", "v2", 2, strategy, startup_timeout=60),))
    seen = reconcile(supervisor, v2, lambda o: states(o) == [ReplicaState.ready] * 2 and not states(o, "v1"))
    assert all(states(o).count(ReplicaState.ready) >= 2 for o in seen)
    assert max(len(o.replicas) for o in seen) >= 3  # the surge replica ran next to the old ones
    for url in supervisor.ready("echo").values():
        assert httpx.post(f"{url}/predict", json={"n": 2}).json() == {"echo": {"n": 2}}


def test_a_hung_replica_leaves_the_routes_after_its_failure_threshold_and_is_replaced(supervisor: Supervisor) -> None:
    desired = Desired((DesiredAPI("echo", "v1", 1),))
    policies = {"echo": CheckPolicy(timeout=0.3, failure_threshold=2)}
    reconcile(supervisor, desired, lambda o: states(o) == [ReplicaState.ready], policies=policies)
    [replica] = supervisor.replicas.values()
    assert replica.process is not None
    os.kill(replica.process.pid, signal.SIGSTOP)  # alive, but answers nothing
    seen = []  # (failed checks, still routed) after each observation
    while replica.status.failed_checks < 2:
        supervisor.observe(policies)
        seen.append((replica.status.failed_checks, replica.status.id in supervisor.ready("echo")))
        time.sleep(0.05)
    assert (1, True) in seen  # one failed check is not enough to lose its traffic
    assert seen[-1] == (2, False)
    assert supervisor.is_coming("echo")  # requests wait for it rather than being refused

    impatient = Desired((DesiredAPI("echo", "v1", 1, health_timeout=2),))
    seen = reconcile(
        supervisor,
        impatient,
        lambda o: states(o) == [ReplicaState.ready] and replica.status.restarts == 1,
        policies=policies,
    )
    errors = {r.last_error for o in seen for r in o.replicas if r.state is ReplicaState.crash_looping}
    assert len(errors) == 1
    assert (errors.pop() or "").startswith("stopped answering health checks")
    assert set(supervisor.ready("echo")) == {replica.status.id}


def test_a_frozen_replica_with_a_long_check_timeout_holds_up_no_observation(supervisor: Supervisor) -> None:
    desired = Desired((DesiredAPI("echo", "v1", 2, startup_timeout=60),))
    policies = {"echo": CheckPolicy(timeout=20.0)}
    reconcile(supervisor, desired, lambda o: states(o) == [ReplicaState.ready] * 2, policies=policies)
    frozen, victim = supervisor.replicas.values()
    assert frozen.process is not None and victim.process is not None
    os.kill(frozen.process.pid, signal.SIGSTOP)
    try:
        while not supervisor.is_checking(frozen.status.id):  # a 20 s check of it is out
            supervisor.observe(policies)
        os.kill(victim.process.pid, signal.SIGKILL)  # the loop must handle this crash without waiting 20 s
        reconcile(
            supervisor,
            desired,
            lambda o: victim.status.restarts == 1 and victim.status.state is ReplicaState.ready,
            policies=policies,
        )
        assert supervisor.is_checking(frozen.status.id)  # its first check is still out: nobody waited for it
        assert frozen.status.id in supervisor.ready("echo")  # and no news is not bad news
    finally:
        os.kill(frozen.process.pid, signal.SIGCONT)


def test_the_stray_sweep_takes_replicas_of_snapshots_and_never_a_job_worker() -> None:
    snapshots = b"/home/u/.shipyard/releases"
    replica = [b"python", b"-m", b"shipyard", b"serve", snapshots + b"/ab12/iris-v1.yaml", b"--port", b"5000"]
    other_home = [b"python", b"-m", b"shipyard", b"serve", b"/tmp/elsewhere/releases/ab12/iris-v1.yaml"]
    worker = [b"python", b"-m", b"shipyard.jobs.worker", b"--job", b"serve", b"--name", snapshots + b"/w"]
    assert is_replica_command(replica, snapshots)
    assert not is_replica_command(other_home, snapshots)
    assert not is_replica_command(worker, snapshots)


def test_an_adopted_replica_that_dies_has_an_unknown_exit_status(
    supervisor: Supervisor, tmp_path: Path, releases: dict[str, Path]
) -> None:
    supervisor.apply([Start("echo", "v1")])
    wait_for(supervisor, lambda o: states(o) == [ReplicaState.ready])
    [original] = supervisor.replicas.values()
    successor = Supervisor(lambda api, version: Release(releases[version], 5.0), tmp_path / "logs")
    try:
        long_ago = [replace(r, status=replace(r.status, healthy_at=0.0)) for r in supervisor.records()]
        adopted_at = time.time()
        successor.adopt(long_ago)  # as a daemon started long after this one was killed
        [adopted] = successor.replicas.values()
        assert (adopted.status.healthy_at or 0.0) >= adopted_at  # not hung: its health clock starts now
        assert adopted.process is not None
        os.kill(adopted.process.pid, signal.SIGKILL)
        observed = wait_for(successor, lambda o: states(o) == [ReplicaState.crashed], timeout=15)
        assert observed.replicas[0].last_error == "exit status unknown (adopted)"
    finally:
        successor.close(timeout=5)
        assert original.process is not None
        original.process.wait(5)  # the zombie is ours to reap (in real life init reaps it)
    supervisor.replicas.clear()  # the successor owned it


def replica_with_log(tmp_path: Path, earlier: str) -> Replica:
    log = tmp_path / "echo-1.log"
    log.write_text(earlier)
    status = ReplicaStatus("echo-1", "echo", "v1", ReplicaState.starting, 0.0)
    replica = Replica(status, 0, log, None)
    replica.log_offset = log.stat().st_size  # as at its launch
    return replica


def test_the_crash_reason_is_a_fatal_line_of_the_current_run_never_a_requests_error(tmp_path: Path) -> None:
    replica = replica_with_log(tmp_path, "2024-05-01 10:00:00,000 ERROR shipyard.http: cannot open weights.bin\n")
    with open(replica.log, "a") as log:
        log.write("2024-05-01 10:00:01,000 ERROR shipyard.engine: handler raised for request(s) ab12\n")
        log.write("Traceback (most recent call last):\n  ValueError: bad row\n")
        log.write("2024-05-01 10:00:02,000 ERROR shipyard.http: request cd34 failed inside Shipyard\n")
    assert _last_error(replica, -9) == "killed by signal 9"
    with open(replica.log, "a") as log:
        log.write("2024-05-01 10:00:03,000 CRITICAL shipyard.http: out of memory loading the model\n")
    assert _last_error(replica, 1) == "exited with code 1: shipyard.http: out of memory loading the model"
    assert fatal_errors(["error: shipyard.yaml: echo.handler: no class 'Nope'"]) == [
        "shipyard.yaml: echo.handler: no class 'Nope'"
    ]
    assert exit_description(UNKNOWN_EXIT) == "exit status unknown (adopted)"
