"""Shipyard's replica against the floor (a minimal Starlette + uvicorn app calling the same handler).

Both serve the two example models, pinned to core 0, loaded by one generator pinned to core 1 at
concurrency 1, 8 and 64, all in one run so the ratios compare like with like on a noisy machine.

    python benchmarks/serving.py [--seconds 5] [--models iris,mlp] [--concurrency 1,8,64]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import LoadResult, build_request, load

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PAYLOADS = {
    "iris": {"sepal_length": 5.9, "sepal_width": 3.0, "petal_length": 5.1, "petal_width": 1.8},
    "mlp": {"pixels": [0, 0, 5, 13, 9, 1, 0, 0] * 8},
}


@dataclass(frozen=True)
class Target:
    label: str
    model: str
    command: list[str]


def targets(model: str) -> list[Target]:
    """Commands to start each server; `{port}` is filled in when it starts."""
    project = str(EXAMPLES / model)
    shipyard = [
        sys.executable,
        "-m",
        "shipyard",
        "--log-level",
        "warning",
        "serve",
        project,
        "--port",
        "{port}",
    ]
    floor = [sys.executable, str(ROOT / "benchmarks" / "floor_app.py"), project]
    if model == "iris":
        return [
            Target("floor", model, [*floor, "iris", "{port}"]),
            Target("shipyard", model, [*shipyard, "--api", "iris"]),
        ]
    return [
        Target("floor", model, [*floor, "mlp-unbatched", "{port}"]),
        Target("shipyard", model, [*shipyard, "--api", "mlp-unbatched"]),
        Target("shipyard-batched", model, [*shipyard, "--api", "mlp"]),
    ]


def ensure_trained(model: str) -> None:
    marker = {
        "iris": EXAMPLES / "iris" / "model" / "iris.skops",
        "mlp": EXAMPLES / "mlp" / "model" / "weights.npz",
    }
    if not marker[model].exists():
        subprocess.run([sys.executable, str(EXAMPLES / model / "train.py")], check=True)


def _pin(core: int) -> None:
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {core})


def start(target: Target, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}  # one core per server
    command = [part.replace("{port}", str(port)) for part in target.command]
    process = subprocess.Popen(
        command, env=env, preexec_fn=lambda: _pin(0), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    body = json.dumps(PAYLOADS[target.model]).encode()
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{target.label} exited: {process.stderr.read().decode() if process.stderr else ''}")
        try:
            reply = httpx.post(
                f"http://127.0.0.1:{port}/predict",
                content=body,
                headers={"content-type": "application/json"},
                timeout=5,
            )
            if reply.status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{target.label} did not answer within 120s")


def measure(
    model: str, concurrencies: list[int], seconds: float, rounds: int, pool: concurrent.futures.Executor
) -> dict[str, list[LoadResult]]:
    """Every server of a model runs at once (idle ones cost nothing); rounds alternate between them so
    that drift in the machine's load hits them alike. Each figure is the median round."""
    running = {}
    try:
        for target in targets(model):
            port = _free_port()
            running[target.label] = (port, start(target, port))
        samples: dict[tuple[str, int], list[LoadResult]] = {}
        body = json.dumps(PAYLOADS[model]).encode()
        for _ in range(rounds):
            for concurrency in concurrencies:
                for label, (port, _) in running.items():
                    request = build_request("127.0.0.1", port, "/predict", body)
                    job = pool.submit(load, "127.0.0.1", port, request, concurrency, seconds, min(1.0, seconds / 3))
                    samples.setdefault((label, concurrency), []).append(job.result())
        return {label: [_median(samples[(label, c)]) for c in concurrencies] for label in running}
    finally:
        for _, process in running.values():
            process.terminate()
            process.wait(30)


def _median(rows: list[LoadResult]) -> LoadResult:
    return sorted(rows, key=lambda row: row.rps)[len(rows) // 2]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


Results = dict[str, dict[str, list[LoadResult]]]


def _row(results: Results, model: str, label: str, concurrency: int) -> LoadResult | None:
    return next((r for r in results.get(model, {}).get(label, []) if r.concurrency == concurrency), None)


def _versus(row: LoadResult, base: LoadResult | None) -> str:
    """Throughput ratio, p50 difference and p99 ratio of `row` against `base` (blank for the base itself)."""
    if base is None or base is row or not base.rps:
        return f"{'':>7} {'':>8} {'':>7}"
    p99 = row.p99_ms / base.p99_ms if base.p99_ms else float("nan")
    return f"{row.rps / base.rps:>6.2f}x {row.p50_ms - base.p50_ms:>+8.3f} {p99:>6.2f}x"


def report(results: Results) -> list[str]:
    """One row per (model, server, concurrency): requests/s, p50, p99, and each figure against the floor (and,
    for the batched mlp, against Shipyard unbatched) at the same concurrency."""
    head = f"{'model':6} {'server':17} {'conc':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}"
    versus = f"{'rps':>7} {'p50 +ms':>8} {'p99':>7}"
    lines = [
        f"{'':{len(head)}} | {'vs floor':{len(versus)}} | vs shipyard unbatched",
        f"{head} | {versus} | {versus}",
    ]
    for model, by_server in results.items():
        for label, rows in by_server.items():
            for row in rows:
                floor = _row(results, model, "floor", row.concurrency)
                plain = _row(results, model, "shipyard", row.concurrency) if label == "shipyard-batched" else None
                lines.append(
                    f"{model:6} {label:17} {row.concurrency:>4} {row.rps:>9.0f} {row.p50_ms:>8.3f} "
                    f"{row.p99_ms:>8.3f} {row.errors:>6} | {_versus(row, floor)} | {_versus(row, plain)}"
                )
    return lines


def goals(results: Results) -> list[str]:
    lines = []
    floor64, ours64 = _row(results, "iris", "floor", 64), _row(results, "iris", "shipyard", 64)
    if floor64 and ours64:
        ratio = ours64.rps / floor64.rps
        lines.append(f"iris c=64: shipyard/floor throughput = {ratio:.2f}x (goal >= 0.9x)")
    floor1, ours1 = _row(results, "iris", "floor", 1), _row(results, "iris", "shipyard", 1)
    if floor1 and ours1:
        lines.append(f"iris c=1: shipyard p50 - floor p50 = {ours1.p50_ms - floor1.p50_ms:+.3f} ms (goal <= 0.3 ms)")
    plain, batched = _row(results, "mlp", "shipyard", 64), _row(results, "mlp", "shipyard-batched", 64)
    if plain and batched:
        lines.append(
            f"mlp c=64: batched/unbatched throughput = {batched.rps / plain.rps:.2f}x (goal >= 4x); "
            f"p99 {batched.p99_ms:.1f} ms vs {plain.p99_ms:.1f} ms unbatched (goal: no worse)"
        )
    floor_mlp = _row(results, "mlp", "floor", 64)
    if floor_mlp and batched and plain:
        lines.append(
            f"mlp c=64 vs floor (unbatched): shipyard {plain.rps / floor_mlp.rps:.2f}x, "
            f"shipyard batched {batched.rps / floor_mlp.rps:.2f}x"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per concurrency level")
    parser.add_argument("--models", default="iris,mlp")
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is reported")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "serving.json")
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    results: dict[str, dict[str, list[LoadResult]]] = {}
    with concurrent.futures.ProcessPoolExecutor(1, initializer=_pin, initargs=(1,)) as pool:
        for model in args.models.split(","):
            ensure_trained(model)
            print(f"measuring {model} ...", file=sys.stderr, flush=True)
            results[model] = measure(model, concurrencies, args.seconds, args.rounds, pool)
    lines = [*report(results), "", *goals(results)]
    print("\n".join(lines))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    serialisable = {m: {s: [r.as_dict() for r in rows] for s, rows in by.items()} for m, by in results.items()}
    args.output.write_text(json.dumps({"results": serialisable, "summary": goals(results)}, indent=2))


if __name__ == "__main__":
    main()
