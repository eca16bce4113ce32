"""The supervisor with real `shipyard serve` processes on loopback ports."""

from __future__ import annotations

import os
import shutil
import signal
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from shipyard.runtime.local.controller import plan
from shipyard.runtime.local.supervisor import Release, Supervisor, is_replica_command
from shipyard.runtime.local.types import (
    Desired,
    DesiredAPI,
    Drain,
    Forget,
    Observed,
    ReplicaState,
    Start,
    Timing,
)
from shipyard.spec.models import UpdateStrategy

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures.py"
FAST = Timing(backoff_base=0.2, backoff_max=1.0, startup_timeout=60, health_timeout=10)


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
) -> list[Observed]:
    """The control loop, as the daemon will run it: observe, plan, apply, until `condition` holds."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        observed = supervisor.observe()
        seen.append(observed)
        if condition(observed):
            return seen
        supervisor.apply(plan(desired, observed, timing))
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
    v1 = Desired((DesiredAPI("echo", "v1", 2, strategy),))
    reconcile(supervisor, v1, lambda o: states(o) == [ReplicaState.ready] * 2)

    victim = next(iter(supervisor.replicas.values()))
    assert victim.process is not None
    os.kill(victim.process.pid, signal.SIGKILL)
    seen = reconcile(supervisor, v1, lambda o: states(o) == [ReplicaState.ready] * 2 and victim.status.restarts == 1)
    crashed = [r for o in seen for r in o.replicas if r.state is ReplicaState.crashed]
    assert crashed
    assert crashed[0].id == victim.status.id
    assert crashed[0].last_error == "killed by signal 9"

    v2 = Desired((DesiredAPI("echo", "v2", 2, strategy),))
    seen = reconcile(supervisor, v2, lambda o: states(o) == [ReplicaState.ready] * 2 and not states(o, "v1"))
    assert all(states(o).count(ReplicaState.ready) >= 2 for o in seen)
    assert max(len(o.replicas) for o in seen) >= 3  # the surge replica ran next to the old ones
    for url in supervisor.ready("echo").values():
        assert httpx.post(f"{url}/predict", json={"n": 2}).json() == {"echo": {"n": 2}}


def test_a_hung_replica_loses_its_traffic_at_once_and_is_replaced(supervisor: Supervisor) -> None:
    desired = Desired((DesiredAPI("echo", "v1", 1),))
    reconcile(supervisor, desired, lambda o: states(o) == [ReplicaState.ready])
    [replica] = supervisor.replicas.values()
    assert replica.process is not None
    os.kill(replica.process.pid, signal.SIGSTOP)  # alive, but answers nothing
    supervisor.observe()
    assert supervisor.ready("echo") == {}

    impatient = Timing(backoff_base=0.2, health_timeout=2)
    seen = reconcile(
        supervisor,
        desired,
        lambda o: states(o) == [ReplicaState.ready] and replica.status.restarts == 1,
        timing=impatient,
    )
    errors = {r.last_error for o in seen for r in o.replicas if r.state is ReplicaState.crash_looping}
    assert len(errors) == 1
    assert (errors.pop() or "").startswith("stopped answering health checks")
    assert set(supervisor.ready("echo")) == {replica.status.id}


def test_the_stray_sweep_takes_replicas_of_snapshots_and_never_a_job_worker() -> None:
    snapshots = b"/home/u/.shipyard/releases"
    replica = [b"python", b"-m", b"shipyard", b"serve", snapshots + b"/ab12/iris-v1.yaml", b"--port", b"5000"]
    other_home = [b"python", b"-m", b"shipyard", b"serve", b"/tmp/elsewhere/releases/ab12/iris-v1.yaml"]
    worker = [b"python", b"-m", b"shipyard.jobs.worker", b"--job", b"serve", b"--name", snapshots + b"/w"]
    assert is_replica_command(replica, snapshots)
    assert not is_replica_command(other_home, snapshots)
    assert not is_replica_command(worker, snapshots)
