"""Whole-system scenarios: CLI → daemon → gateway → replica processes, on real loopback sockets."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from shipyard.errors import NotFound
from tests.e2e.conftest import Daemon, Load, shipyard

ECHO = """
- name: echo
  handler: handlers.py:Echo
  concurrency: {max_concurrency: 4}
"""

TWO_AND_A_SPLITTER = """
- name: stable
  handler: handlers.py:Echo
  concurrency: {max_concurrency: 4}
- name: candidate
  handler: handlers.py:Echo
  config: {variant: b}
  concurrency: {max_concurrency: 4}
- name: shadowed
  handler: handlers.py:Slow
  config: {seconds: 0.02}
  concurrency: {max_concurrency: 4}
- name: front
  kind: TrafficSplitter
  apis:
    - {name: stable, weight: 70}
    - {name: candidate, weight: 30}
    - {name: shadowed, weight: 100, shadow: true}
"""


def test_two_apis_and_a_splitter_with_a_shadow(daemon: Daemon) -> None:
    project = daemon.project(TWO_AND_A_SPLITTER)
    deployed = daemon.deploy(project)
    assert deployed.returncode == 0, deployed.stderr
    assert "front: live" in deployed.stdout
    with httpx.Client(base_url=daemon.gateway) as http:
        for api in ("stable", "candidate"):
            assert http.post(f"/{api}", json={"x": 1}).json() == {"echo": {"x": 1}}
        answers = [http.post("/front", json={"n": n}) for n in range(60)]
        assert all(a.status_code == 200 for a in answers)
        assert all(a.json() == {"echo": {"n": n}} for n, a in enumerate(answers))
        metrics = http.get("/metrics").text
    assert 'shipyard_gateway_requests_total{api="front",code="200"} 60.0' in metrics

    def compared() -> bool:
        shadows = daemon.client.get("front")["shadows"]
        return bool(shadows) and shadows[0]["compared"] + shadows[0]["failed"] + shadows[0]["skipped"] >= 60

    daemon.wait_for(compared, what="shadow comparisons recorded")
    found = daemon.client.get("front")
    shadow = found["shadows"][0]
    assert shadow["shadow"] == "shadowed"
    assert shadow["compared"] > 0 and shadow["failed"] == 0
    assert shadow["agreement"] == 0.0  # Slow answers {"slept": ...}, never the echo
    assert shadow["shadow_mean_ms"] > shadow["primary_mean_ms"]
    assert shadow["shadow_p50_ms"] >= 20 > shadow["primary_p50_ms"]  # Slow sleeps 20 ms; both timed alike
    assert found["status"] == "live"
    targets = {t["name"]: (t["weight"], t["shadow"], t["status"], t["ready"]) for t in found["targets"]}
    assert targets == {
        "stable": (70, False, "live", 1),
        "candidate": (30, False, "live", 1),
        "shadowed": (100, True, "live", 1),
    }
    shown = shipyard("get", "front")
    assert "SHADOW" in shown.stdout and "shadowed" in shown.stdout and "SKIPPED" in shown.stdout
    assert "candidate  30%" in shown.stdout
    logs = shipyard("logs", "front")
    assert logs.returncode == 2 and "is a TrafficSplitter" in logs.stderr and "stable, candidate" in logs.stderr

    again = daemon.deploy(project, "--no-wait")
    assert again.returncode == 0
    assert again.stdout.count("unchanged") == 4


def test_killed_replica_comes_back(daemon: Daemon) -> None:
    assert daemon.deploy(daemon.project(ECHO)).returncode == 0
    [replica] = daemon.client.get("echo")["replicas"]
    os.kill(replica["pid"], signal.SIGKILL)

    def restarted() -> bool:
        found = daemon.client.get("echo")
        current = found["replicas"]
        return found["status"] == "live" and current[0]["pid"] != replica["pid"] and current[0]["restarts"] == 1

    daemon.wait_for(restarted, what="replica restarted")
    events = [e["kind"] for e in daemon.client.get("echo")["events"]]
    assert "crashed" in events and "restarting" in events
    assert httpx.post(f"{daemon.gateway}/echo", json=1).json() == {"echo": 1}


def test_scales_up_under_load_and_back_down(daemon: Daemon) -> None:
    spec = """
    - name: busy
      handler: handlers.py:Slow
      config: {seconds: 0.1}
      concurrency: {max_concurrency: 1, max_queue_length: 50}
      autoscaling: {min_replicas: 1, max_replicas: 3, target_in_flight: 1, window: 2s,
                    upscale_stabilization: 0s, downscale_stabilization: 3s}
    """
    assert daemon.deploy(daemon.project(spec)).returncode == 0
    with Load(f"{daemon.gateway}/busy", {}, workers=6) as load:
        daemon.wait_for(lambda: daemon.client.get("busy")["ready"] == 3, timeout=40, what="3 ready replicas")
    assert load.errors == []
    assert set(load.codes) == {200}
    daemon.wait_for(lambda: daemon.client.get("busy")["desired"] == 1, timeout=40, what="scale back to 1")
    scaled = [e["message"] for e in daemon.client.get("busy")["events"] if e["kind"] == "scaled"]
    assert any("scale 1 →" in message for message in scaled)
    assert any("→ 1" in message and "average in-flight" in message for message in scaled)


def test_rolling_update_under_load_fails_no_request(daemon: Daemon) -> None:
    spec = """
    - name: echo
      handler: handlers.py:Echo
      config: {release: {release}}
      concurrency: {max_concurrency: 8}
      autoscaling: {min_replicas: 2, max_replicas: 2}
      update_strategy: {max_surge: 1, max_unavailable: 0}
    """
    project = daemon.project(spec.replace("{release}", "1"))
    assert daemon.deploy(project).returncode == 0
    before = {r["id"] for r in daemon.client.get("echo")["replicas"]}
    with Load(f"{daemon.gateway}/echo", {"x": 1}, workers=6) as load:
        time.sleep(1.0)
        (project / "shipyard.yaml").write_text(spec.replace("{release}", "2"))
        updated = daemon.deploy(project)
        assert updated.returncode == 0, updated.stderr
        assert "rolling out" in updated.stdout
        time.sleep(1.0)
    after = {r["id"] for r in daemon.client.get("echo")["replicas"]}
    assert not before & after
    assert load.errors == []
    assert load.codes[200] >= 2000, load.codes
    assert set(load.codes) == {200}, load.codes


def test_broken_update_leaves_the_old_version_serving(daemon: Daemon) -> None:
    project = daemon.project(ECHO)
    assert daemon.deploy(project).returncode == 0
    (project / "shipyard.yaml").write_text(ECHO.replace("Echo", "BrokenInit"))
    broken = daemon.deploy(project, "--timeout", "60")
    assert broken.returncode == 1
    assert "cannot open weights.bin" in broken.stderr
    assert "Traceback" not in broken.stderr
    found = daemon.client.get("echo")
    assert found["status"] == "update stalled"
    assert "cannot open weights.bin" in found["message"]
    assert httpx.post(f"{daemon.gateway}/echo", json=2).json() == {"echo": 2}
    (project / "shipyard.yaml").write_text(ECHO)
    fixed = daemon.deploy(project)
    assert fixed.returncode == 0, fixed.stderr
    assert daemon.client.get("echo")["status"] == "live"


def test_daemon_killed_and_restarted_adopts_its_replicas(daemon: Daemon) -> None:
    spec = ECHO + "  autoscaling: {min_replicas: 2, max_replicas: 2}\n"
    assert daemon.deploy(daemon.project(spec)).returncode == 0
    before = {(r["id"], r["pid"]) for r in daemon.client.get("echo")["replicas"]}
    os.kill(daemon.pid(), signal.SIGKILL)
    daemon.wait_for(lambda: not daemon.home.is_locked(), what="daemon gone")
    assert len(daemon.serve_processes()) == 2  # the replicas outlive it
    daemon.up()
    first = httpx.post(f"{daemon.gateway}/echo", json=0)  # maybe before the first tick: not ready yet, never unknown
    assert first.status_code in (200, 503), first.text
    daemon.wait_for(lambda: daemon.client.get("echo")["status"] == "live", what="live again")
    time.sleep(1.0)  # a few ticks: nothing new may start
    after = {(r["id"], r["pid"]) for r in daemon.client.get("echo")["replicas"]}
    assert after == before
    kinds = [e["kind"] for e in daemon.client.get("echo")["events"]]
    assert kinds.count("live") == 1, kinds  # live before the restart and after it: one event
    assert sorted(daemon.serve_processes()) == sorted(pid for _, pid in before)
    assert httpx.post(f"{daemon.gateway}/echo", json=3).json() == {"echo": 3}


def test_full_queue_answers_503_at_once(daemon: Daemon) -> None:
    spec = """
    - name: slow
      handler: handlers.py:Slow
      config: {seconds: 1.5}
      concurrency: {max_concurrency: 1, max_queue_length: 1}
    """
    assert daemon.deploy(daemon.project(spec)).returncode == 0

    def call(_: int) -> tuple[int, float, str | None]:
        started = time.monotonic()
        response = httpx.post(f"{daemon.gateway}/slow", json={}, timeout=30)
        return response.status_code, time.monotonic() - started, response.headers.get("retry-after")

    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        results = list(pool.map(call, range(5)))
    refused = [r for r in results if r[0] == 503]
    # capacity: max_concurrency (1) in flight at the replica, plus max_queue_length (1) waiting in the gateway
    assert sorted(code for code, _, _ in results) == [200, 200, 503, 503, 503]
    assert all(seconds < 1.0 and retry == "1" for _, seconds, retry in refused)


def test_control_api_refuses_requests_without_the_token(daemon: Daemon) -> None:
    url = daemon.client.url
    assert httpx.get(f"{url}/v1/status").status_code == 401
    wrong = httpx.get(f"{url}/v1/apis", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert "token" in wrong.json()["error"]["message"]
    assert httpx.post(f"{url}/v1/shutdown").status_code == 401
    token = daemon.home.token_file
    assert token.stat().st_mode & 0o077 == 0
    assert daemon.client.status()["gateway_url"] == daemon.gateway
    elsewhere = daemon.root / "other-home"  # as on another machine: no token file to fall back on
    elsewhere.mkdir()
    remote = {**os.environ, "SHIPYARD_URL": url, "SHIPYARD_HOME": str(elsewhere)}
    remote.pop("SHIPYARD_TOKEN", None)
    missing = shipyard("status", env=remote)
    assert missing.returncode == 1 and "no token for the Shipyard daemon" in missing.stderr
    assert "no Shipyard daemon answers" not in missing.stderr
    refused = shipyard("get", env={**remote, "SHIPYARD_TOKEN": "wrong"})
    assert refused.returncode == 1 and "refused the token from SHIPYARD_TOKEN" in refused.stderr
    right = shipyard("get", env={**remote, "SHIPYARD_TOKEN": token.read_text().strip()})
    assert right.returncode == 0, right.stderr


def test_bad_input_is_one_line_and_deploys_nothing(daemon: Daemon) -> None:
    project = daemon.project(ECHO.replace("max_concurrency: 4", "max_concurrency: 0"))
    result = daemon.deploy(project)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "max_concurrency" in result.stderr
    assert daemon.client.get() == []
    missing = daemon.deploy(daemon.root / "nowhere")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    unknown = shipyard("get", "ghost")
    assert unknown.returncode == 1 and "'ghost' is not deployed" in unknown.stderr
    with pytest.raises(NotFound, match="'ghost' is not deployed"):
        daemon.client.get("ghost")
    bad_json = shipyard("predict", "echo", "{nope")
    assert bad_json.returncode == 2 and "not valid JSON" in bad_json.stderr


def test_get_predict_logs_refresh_delete(daemon: Daemon) -> None:
    assert daemon.deploy(daemon.project(ECHO)).returncode == 0
    answer = shipyard("predict", "echo", '{"a": 1}')
    assert json.loads(answer.stdout) == {"echo": {"a": 1}}
    listed = json.loads(shipyard("get", "-o", "json").stdout)
    assert [api["name"] for api in listed] == ["echo"] and listed[0]["2xx"] >= 1
    logs = shipyard("logs", "echo")
    assert "is ready" in logs.stdout and logs.stdout.startswith("[echo-")
    [old] = daemon.client.get("echo")["replicas"]
    refreshed = shipyard("refresh", "echo")
    assert refreshed.returncode == 0
    daemon.wait_for(
        lambda: (
            [r["id"] for r in daemon.client.get("echo")["replicas"]] not in ([old["id"]], [])
            and daemon.client.get("echo")["status"] == "live"
        ),
        what="refresh done",
    )
    [new] = daemon.client.get("echo")["replicas"]
    current = shipyard("logs", "echo").stdout
    assert f"[{new['id']}]" in current and f"[{old['id']}]" not in current
    history = shipyard("logs", "echo", "--all").stdout
    assert f"[{new['id']}]" in history and f"[{old['id']}]" in history
    watching = subprocess.Popen(
        [sys.executable, "-m", "shipyard", "get", "-w"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell starts background jobs with SIGINT ignored, and children inherit that; Ctrl-C is what's tested.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(2.0)
    watching.send_signal(signal.SIGINT)
    out, err = watching.communicate(timeout=20)
    assert watching.returncode == 0 and "Aborted" not in err and "echo" in out
    assert shipyard("delete", "echo").returncode == 0
    daemon.wait_for(lambda: not daemon.serve_processes(), what="replicas stopped")
    assert daemon.client.get() == []


EXITING = '''
import os


class Exiting:
    """Echoes, except that the payload "die" ends the process at once, as a segfaulting model would."""

    def __init__(self, config, model_path):
        pass

    def predict(self, payload):
        if payload == "die":
            os._exit(3)
        return {"echo": payload}
'''


def test_a_request_that_kills_its_replica_is_not_retried_on_another(daemon: Daemon) -> None:
    spec = """
    - name: fragile
      handler: exiting.py:Exiting
      concurrency: {max_concurrency: 2}
      autoscaling: {min_replicas: 2, max_replicas: 2}
    """
    project = daemon.project(spec)
    (project / "exiting.py").write_text(EXITING)
    assert daemon.deploy(project).returncode == 0
    fatal = httpx.post(f"{daemon.gateway}/fragile", json="die", headers={"x-request-id": "poison-1"})
    assert fatal.status_code == 502 and fatal.headers["x-request-id"] == "poison-1"
    assert fatal.json()["error"]["type"] == "BadGateway"

    def one_crash() -> bool:
        replicas = daemon.client.get("fragile")["replicas"]
        return sorted(r["restarts"] for r in replicas) == [0, 1]

    daemon.wait_for(one_crash, what="exactly one replica crashed")
    time.sleep(1.0)  # had the gateway retried, the second replica would be crashing now
    replicas = daemon.client.get("fragile")["replicas"]
    assert sorted(r["restarts"] for r in replicas) == [0, 1]
    ok = httpx.post(f"{daemon.gateway}/fragile", json="fine", headers={"x-request-id": "fine-1"})
    assert ok.json() == {"echo": "fine"} and ok.headers["x-request-id"] == "fine-1"


def test_requests_to_a_replica_that_just_died_are_retried_on_the_other(daemon: Daemon) -> None:
    spec = ECHO + "  autoscaling: {min_replicas: 2, max_replicas: 2}\n"
    assert daemon.deploy(daemon.project(spec)).returncode == 0
    victim, _ = daemon.client.get("echo")["replicas"]
    os.kill(victim["pid"], signal.SIGKILL)  # the gateway still routes to it until the next health check
    with httpx.Client(base_url=daemon.gateway) as http:
        answers = [http.post("/echo", json=n, headers={"x-request-id": f"after-kill-{n}"}) for n in range(30)]
    assert [a.status_code for a in answers] == [200] * 30
    assert all(a.headers["x-request-id"] == f"after-kill-{n}" for n, a in enumerate(answers))


def test_rolling_restart_under_slow_requests_fails_none(daemon: Daemon) -> None:
    # requests of 4 s, four times the grace period, beside a stream of short ones: a replica is signalled only
    # once the gateway has its answers (it may wait up to the API's timeout for them), then has its grace period
    spec = """
    - name: slow
      handler: handlers.py:Slow
      config: {seconds: 0.02}
      grace_period: 1s
      timeout: 10s
      concurrency: {max_concurrency: 4, max_queue_length: 50}
      autoscaling: {min_replicas: 2, max_replicas: 2}
      update_strategy: {max_surge: 1, max_unavailable: 0}
    """
    assert daemon.deploy(daemon.project(spec)).returncode == 0
    before = {r["id"] for r in daemon.client.get("slow")["replicas"]}
    with (
        Load(f"{daemon.gateway}/slow", {"sleep": 4.0}, workers=4) as slow,
        Load(f"{daemon.gateway}/slow", {}, workers=4) as load,
    ):
        time.sleep(2.0)  # the long requests are under way at both old replicas
        assert shipyard("refresh", "slow").returncode == 0

        def replaced() -> bool:
            found = daemon.client.get("slow")
            return found["status"] == "live" and not before & {r["id"] for r in found["replicas"]}

        daemon.wait_for(replaced, timeout=60, what="every replica replaced")
    assert load.errors == [] and slow.errors == []
    assert set(load.codes) == {200} and set(slow.codes) == {200}, (load.codes, slow.codes)
    assert load.codes[200] >= 300 and slow.codes[200] >= 4, (load.codes, slow.codes)


GIL_HOLDER = """
import time


class HoldsTheGil:
    \"\"\"Holds the GIL for `seconds` in one C call per request, as a big numpy or tokenizer call can: the
    replica's event loop, /readyz included, answers nothing meanwhile, though the replica works fine.\"\"\"

    def __init__(self, config, model_path):
        started = time.perf_counter()
        sum(range(2_000_000))
        self.count = int(2_000_000 * float(config["seconds"]) / (time.perf_counter() - started))

    def predict(self, payload):
        sum(range(self.count))
        return {"held": True}
"""


def test_a_replica_slow_to_answer_health_checks_keeps_its_traffic_and_queued_requests_wait(daemon: Daemon) -> None:
    # each request holds the GIL ~1.3 s; a check (0.3 s timeout) sent meanwhile fails. One failed check, or
    # both replicas failing at once, must neither drop a working replica nor refuse the queued requests
    spec = """
    - name: heavy
      handler: gil.py:HoldsTheGil
      config: {seconds: 1.3}
      timeout: 60s
      health_check: {timeout: 0.3s}
      concurrency: {max_concurrency: 1, max_queue_length: 10}
      autoscaling: {min_replicas: 2, max_replicas: 2}
    """
    project = daemon.project(spec)
    (project / "gil.py").write_text(GIL_HOLDER)
    assert daemon.deploy(project).returncode == 0
    most_failed = 0
    with Load(f"{daemon.gateway}/heavy", {}, workers=4) as load:
        deadline = time.monotonic() + 7
        while time.monotonic() < deadline:
            replicas = daemon.client.get("heavy")["replicas"]
            most_failed = max([most_failed, *(r["failed_checks"] for r in replicas)])
            time.sleep(0.2)
    assert most_failed >= 1  # the checks did fail meanwhile
    assert load.errors == [] and set(load.codes) == {200}, load.codes
    assert load.codes[200] >= 6
    assert daemon.client.get("heavy")["status"] == "live"


def test_an_api_at_zero_replicas_wakes_on_a_request_and_goes_back_to_zero(daemon: Daemon) -> None:
    spec = """
    - name: lazy
      handler: handlers.py:Echo
      autoscaling: {min_replicas: 0, max_replicas: 2, window: 1s, upscale_stabilization: 0s,
                    downscale_stabilization: 2s}
    """
    deployed = daemon.deploy(daemon.project(spec))
    assert deployed.returncode == 0, deployed.stderr
    assert daemon.client.get("lazy")["replicas"] == [] and not daemon.serve_processes()
    answer = httpx.post(f"{daemon.gateway}/lazy", json={"wake": 1}, timeout=30)
    assert answer.status_code == 200 and answer.json() == {"echo": {"wake": 1}}
    events = [e["message"] for e in daemon.client.get("lazy")["events"] if e["kind"] == "scaled"]
    assert "scale 0 → 1: a request is waiting for a replica" in events
    daemon.wait_for(lambda: daemon.client.get("lazy")["desired"] == 0, timeout=40, what="back to zero")
    daemon.wait_for(lambda: not daemon.serve_processes(), what="its replica stopped")
    again = httpx.post(f"{daemon.gateway}/lazy", json={"wake": 2}, timeout=30)
    assert again.json() == {"echo": {"wake": 2}}


def test_a_new_version_that_never_becomes_ready_leaves_the_old_one_serving(daemon: Daemon) -> None:
    project = daemon.project(ECHO)
    assert daemon.deploy(project).returncode == 0
    hanging = ECHO.replace("Echo", "SlowLoad") + "  config: {load_seconds: 120}\n  startup_timeout: 2s\n"
    (project / "shipyard.yaml").write_text(hanging)
    stuck = daemon.deploy(project, "--timeout", "60")
    assert stuck.returncode == 1, stuck.stdout
    assert "update stalled" in stuck.stderr and "not ready 2s after it started (startup_timeout)" in stuck.stderr
    found = daemon.client.get("echo")
    assert found["status"] == "update stalled" and "startup_timeout" in found["message"]
    assert httpx.post(f"{daemon.gateway}/echo", json=4).json() == {"echo": 4}
    shown = shipyard("get", "echo").stdout
    assert "why: version" in shown and ("starting for" in shown or "crash-looping for" in shown)


def test_a_deploy_that_times_out_names_what_is_not_ready(daemon: Daemon) -> None:
    slow = ECHO.replace("Echo", "SlowLoad") + "  config: {load_seconds: 30}\n"
    waited = daemon.deploy(daemon.project(slow), "--timeout", "2")
    assert waited.returncode == 1
    assert "echo is scaling (0/1 ready)" in waited.stderr and "starting for" in waited.stderr


def test_a_replica_that_died_while_the_daemon_was_down_is_restarted_and_the_other_adopted(daemon: Daemon) -> None:
    spec = ECHO + "  autoscaling: {min_replicas: 2, max_replicas: 2}\n"
    assert daemon.deploy(daemon.project(spec)).returncode == 0
    survivor, victim = daemon.client.get("echo")["replicas"]
    os.kill(daemon.pid(), signal.SIGKILL)
    daemon.wait_for(lambda: not daemon.home.is_locked(), what="daemon gone")
    os.kill(victim["pid"], signal.SIGKILL)
    daemon.up()

    def recovered() -> bool:
        found = daemon.client.get("echo")
        return found["status"] == "live" and {r["id"] for r in found["replicas"]} == {survivor["id"], victim["id"]}

    daemon.wait_for(recovered, what="live again")
    replicas = {r["id"]: r for r in daemon.client.get("echo")["replicas"]}
    assert replicas[survivor["id"]]["pid"] == survivor["pid"]  # adopted, not replaced
    assert replicas[victim["id"]]["pid"] != victim["pid"] and replicas[victim["id"]]["restarts"] == 1
    crashes = [e["message"] for e in daemon.client.get("echo")["events"] if e["kind"] == "crashed"]
    assert any("its process ended while the daemon was not running" in message for message in crashes)
    assert len(daemon.serve_processes()) == 2
