"""The gateway's overhead: the iris example served by one replica, loaded (a) straight and (b) through the gateway.

One daemon in a scratch SHIPYARD_HOME runs the example; the replica is pinned to core 0, the load generator
and the daemon (which holds the gateway) to core 1, so the replica has the same core to itself in both
measurements and the gateway's cost shows as what it takes from the load generator's core.
Rounds alternate between direct and gateway so drift hits both alike; each figure is the median round.
Then the API is scaled to 2 replicas and the gateway's requests/s measured again.

    python benchmarks/gateway.py [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import LoadResult, build_request, load

from serving import PAYLOADS, _median, _pin, ensure_trained

ROOT = Path(__file__).resolve().parents[1]
BODY = json.dumps(PAYLOADS["iris"]).encode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pin_process(pid: int, cores: set[int]) -> None:
    """Pin every thread of a running process (sched_setaffinity on a pid moves only its main thread)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), cores)


def start_daemon(home: Path) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    env = {
        **os.environ,
        "SHIPYARD_HOME": str(home),
        "SHIPYARD_CONTROL_PORT": str(_free_port()),
        "SHIPYARD_GATEWAY_PORT": str(_free_port()),
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    command = [sys.executable, "-m", "shipyard", "--log-level", "warning", "up", "--foreground"]
    log = open(home / "daemon.out", "wb")  # noqa: SIM115 - the daemon writes it for its whole life
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    os.environ.update(env)  # the SDK below finds this daemon through SHIPYARD_HOME
    deadline = time.monotonic() + 60
    while not (home / "daemon.json").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the daemon did not start: {(home / 'daemon.out').read_text()}")
        time.sleep(0.1)
    return process, env


def project(root: Path, replicas: int, max_concurrency: int | None) -> Path:
    target = root / "iris"
    if not target.exists():
        shutil.copytree(ROOT / "examples" / "iris", target, ignore=shutil.ignore_patterns("__pycache__"))
    spec = (ROOT / "examples" / "iris" / "shipyard.yaml").read_text()
    scaling = f"  autoscaling: {{min_replicas: {replicas}, max_replicas: {replicas}}}\n"
    if max_concurrency is not None:
        spec = spec.replace("concurrency: {", f"concurrency: {{max_concurrency: {max_concurrency}, ")
    (target / "shipyard.yaml").write_text(spec.rstrip("\n") + "\n" + scaling)
    return target


def deploy(client: object, path: Path, replicas: int) -> list[dict[str, object]]:
    from shipyard.client import Client

    assert isinstance(client, Client)
    client.deploy(path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = client.get("iris")
        ready = [r for r in found["replicas"] if r["state"] == "ready"]
        if found["status"] == "live" and len(ready) == replicas:
            return ready
        time.sleep(0.2)
    raise RuntimeError(f"iris not live with {replicas} replicas: {client.get('iris')}")


def measure(
    targets: dict[str, tuple[int, str]],
    concurrencies: list[int],
    seconds: float,
    rounds: int,
    pool: concurrent.futures.Executor,
) -> dict[str, list[LoadResult]]:
    samples: dict[tuple[str, int], list[LoadResult]] = {}
    for _ in range(rounds):
        for concurrency in concurrencies:
            for label, (port, path) in targets.items():
                request = build_request("127.0.0.1", port, path, BODY)
                job = pool.submit(load, "127.0.0.1", port, request, concurrency, seconds, min(1.0, seconds / 3))
                samples.setdefault((label, concurrency), []).append(job.result())
    return {label: [_median(samples[(label, c)]) for c in concurrencies] for label in targets}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--max-concurrency", type=int, help="override the example's max_concurrency (default: the example's, 1)"
    )
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "gateway.json")
    args = parser.parse_args()
    ensure_trained("iris")
    scratch = Path(tempfile.mkdtemp(prefix="shipyard-gateway-bench-"))
    daemon, env = start_daemon(scratch)
    from shipyard.client import Client

    client = Client()
    try:
        gateway_port = int(env["SHIPYARD_GATEWAY_PORT"])
        [replica] = deploy(client, project(scratch, 1, args.max_concurrency), 1)
        pin_process(int(str(replica["pid"])), {0})
        pin_process(daemon.pid, {1})  # the gateway shares the load generator's core, never the replica's
        targets = {"direct": (int(str(replica["port"])), "/predict"), "gateway": (gateway_port, "/iris/predict")}
        with concurrent.futures.ProcessPoolExecutor(1, initializer=_pin, initargs=(1,)) as pool:
            print("measuring one replica, direct and through the gateway ...", file=sys.stderr, flush=True)
            one = measure(targets, [1, 64], args.seconds, args.rounds, pool)
            deploy(client, project(scratch, 2, args.max_concurrency), 2)
            print("measuring two replicas through the gateway ...", file=sys.stderr, flush=True)
            two = measure({"gateway-2-replicas": targets["gateway"]}, [64], args.seconds, args.rounds, pool)
    finally:
        client.close()
        daemon.terminate()
        daemon.wait(60)
        shutil.rmtree(scratch, ignore_errors=True)
    results = {**one, **two}
    lines = [f"{'target':20} {'conc':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}"]
    for label, rows in results.items():
        for row in rows:
            lines.append(
                f"{label:20} {row.concurrency:>4} {row.rps:>9.0f} {row.p50_ms:>8.3f} {row.p99_ms:>8.3f} {row.errors:>6}"
            )
    direct1, direct64 = one["direct"]
    gate1, gate64 = one["gateway"]
    max_concurrency = args.max_concurrency or 1
    summary = [
        f"max_concurrency {max_concurrency}: the gateway sends each replica at most that many requests at once",
        f"c=64: gateway/direct throughput = {gate64.rps / direct64.rps:.2f}x (goal >= 0.7x)",
        f"c=1: gateway p50 - direct p50 = {gate1.p50_ms - direct1.p50_ms:+.3f} ms (goal <= 1 ms)",
        f"c=64 through the gateway with 2 replicas: {two['gateway-2-replicas'][0].rps:.0f} req/s",
    ]
    print("\n".join([*lines, "", *summary]))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    serialisable = {label: [r.as_dict() for r in rows] for label, rows in results.items()}
    found = {"max_concurrency": max_concurrency, "results": serialisable, "summary": summary}
    args.output.write_text(json.dumps(found, indent=2))


if __name__ == "__main__":
    main()
