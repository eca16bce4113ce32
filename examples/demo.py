"""`make demo`: train the iris example if needed, deploy it behind the gateway, predict, show where to look.

Everything runs on this machine: `shipyard deploy` starts the daemon (control API, gateway and one
replica process) when none runs, and waits until the API is live. At the end the demo stops the daemon
it started (`shipyard down`: replicas drain, then exit); `--keep` leaves it running to explore. A daemon
that was already running is left as it was.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
IRIS = HERE / "iris"
FLOWER = {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}
SHIPYARD = [sys.executable, "-m", "shipyard"]


def step(text: str) -> None:
    bold, plain = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")
    print(f"\n{bold}==> {text}{plain}", flush=True)


def shipyard(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    print(f"$ shipyard {shlex.join(args)}", flush=True)
    done = subprocess.run([*SHIPYARD, *args], env=env, text=True, capture_output=True)
    print(done.stdout + done.stderr, end="", flush=True)
    if check and done.returncode != 0:
        sys.exit(f"`shipyard {shlex.join(args)}` failed with exit code {done.returncode}")
    return done


def is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def daemon_env(env: dict[str, str]) -> dict[str, str]:
    """The daemon's ports: the defaults (7070, 8080) when they are free, other free ones when they are not."""
    for variable, default in (("SHIPYARD_CONTROL_PORT", 7070), ("SHIPYARD_GATEWAY_PORT", 8080)):
        if variable not in env:
            env[variable] = str(default if is_free(default) else free_port())
    return env


def gateway_url(env: dict[str, str]) -> str:
    status = subprocess.run([*SHIPYARD, "status", "-o", "json"], env=env, text=True, capture_output=True)
    return str(json.loads(status.stdout)["gateway_url"]).rstrip("/")


def show(method: str, url: str, body: object | None = None) -> None:
    shown = f" -H 'Content-Type: application/json' -d '{json.dumps(body)}'" if body is not None else ""
    print(f"$ curl{' -X POST' if body is not None else ''} {url}{shown}")
    response = httpx.request(method, url, json=body, timeout=10)
    print(f"{response.status_code} {response.text}", flush=True)


def tour(env: dict[str, str]) -> None:
    step("Deploying examples/iris (starts the daemon if none runs, waits until the API is live)")
    shipyard("deploy", str(IRIS), env=env)
    url = f"{gateway_url(env)}/iris"
    step("One prediction, with the CLI and with curl through the gateway")
    shipyard("predict", "iris", json.dumps(FLOWER), env=env)
    show("POST", url, FLOWER)
    step("Several at once, and a request the input schema refuses")
    show("POST", url, [FLOWER, {**FLOWER, "petal_length": 1.4, "petal_width": 0.2}])
    show("POST", url, {**FLOWER, "petal_width": "wide"})
    step("The same model through the Open Inference Protocol v2")
    tensor = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": list(FLOWER.values())}]}
    show("POST", f"{url}/v2/models/iris/infer", tensor)
    step("What runs: status, replicas, traffic over the last minute, the model's digest, events")
    shipyard("get", "iris", env=env)
    step("What the replica says it serves, and a few of the gateway's Prometheus metrics")
    show("GET", f"{url}/")
    metrics = httpx.get(f"{gateway_url(env)}/metrics", timeout=10).text.splitlines()
    print(f"$ curl {gateway_url(env)}/metrics | grep 'api=\"iris\"' | head -4")
    print("\n".join([line for line in metrics if 'api="iris"' in line and not line.startswith("#")][:4]))


def what_next(env: dict[str, str], stopped: bool) -> None:
    step("What to try next")
    prefix = "" if "SHIPYARD_HOME" not in os.environ else f"SHIPYARD_HOME={os.environ['SHIPYARD_HOME']} "
    cli = f"{prefix}.venv/bin/shipyard"
    gateway = f"127.0.0.1:{env['SHIPYARD_GATEWAY_PORT']}"
    if stopped:
        print(f"  deploy it yourself:  {cli} deploy examples/iris          (then, while it runs:)")
    print(
        f"  every API:           {cli} get          (-w to watch, -o json for scripts)\n"
        f"  its logs:            {cli} logs iris -f\n"
        f"  what is served:      curl {gateway}/iris/          (handler, model path and sha256 digest)\n"
        f"  Prometheus metrics:  curl {gateway}/metrics\n"
        f"  a rolling restart:   {cli} refresh iris\n"
        f"  register and govern: {cli} models register iris examples/iris/model --metric accuracy=0.97\n"
        f"  stop everything:     {cli} down\n"
        "  read: README.md, docs/runtime.md, docs/handlers.md, docs/configuration.md, docs/registry.md, docs/jobs.md"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the daemon running at the end")
    args = parser.parse_args()
    if not (IRIS / "model" / "iris.skops").exists():
        step("Training the iris example (examples/iris/train.py)")
        subprocess.run([sys.executable, str(IRIS / "train.py")], check=True)
    env = dict(os.environ)
    running = subprocess.run([*SHIPYARD, "status", "-o", "json"], env=env, capture_output=True, text=True)
    started_here = running.returncode != 0
    if started_here:
        env = daemon_env(env)
    else:
        gateway = json.loads(running.stdout)["gateway_url"]
        env["SHIPYARD_GATEWAY_PORT"] = gateway.rstrip("/").rsplit(":", 1)[1]
    stop = started_here and not args.keep
    try:
        tour(env)
    finally:
        if stop:
            step("Stopping the daemon this demo started (replicas drain their in-flight requests, then exit)")
            shipyard("down", env=env, check=False)
    what_next(env, stopped=stop)


if __name__ == "__main__":
    main()
