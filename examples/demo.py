"""`make demo`: train the iris example if needed, serve it, make predictions, show where to look, stop.

Everything runs on this machine: `shipyard serve` in the background on a free port, then plain HTTP.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
IRIS = HERE / "iris"
FLOWER = {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def step(text: str) -> None:
    bold, plain = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")
    print(f"\n{bold}==> {text}{plain}", flush=True)


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"shipyard serve exited with code {process.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.terminate()
    sys.exit("shipyard serve did not become ready within 60s")


def show(method: str, url: str, body: object | None = None) -> None:
    shown = f" -H 'Content-Type: application/json' -d '{json.dumps(body)}'" if body is not None else ""
    print(f"$ curl{' -X POST' if body is not None else ''} {url}{shown}")
    response = httpx.request(method, url, json=body, timeout=10)
    print(f"{response.status_code} {response.text}")


def main() -> None:
    if not (IRIS / "model" / "iris.skops").exists():
        step("Training the iris example (examples/iris/train.py)")
        subprocess.run([sys.executable, str(IRIS / "train.py")], check=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    step(f"Serving examples/iris: shipyard serve examples/iris --port {port}")
    command = [sys.executable, "-m", "shipyard", "--log-level", "warning", "serve", str(IRIS), "--port", str(port)]
    process = subprocess.Popen(command)
    try:
        wait_ready(url, process)
        step("One prediction")
        show("POST", f"{url}/predict", FLOWER)
        step("Several at once, and a request the input schema refuses")
        show("POST", f"{url}/predict", [FLOWER, {**FLOWER, "petal_length": 1.4, "petal_width": 0.2}])
        show("POST", f"{url}/predict", {**FLOWER, "petal_width": "wide"})
        step("The same model through the Open Inference Protocol v2")
        tensor = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": list(FLOWER.values())}]}
        show("POST", f"{url}/v2/models/iris/infer", tensor)
        step("What to try next")
        print(
            "  serve it yourself:   .venv/bin/shipyard serve examples/iris --port 8080\n"
            "  then look inside:    curl localhost:8080/          (what is served, with the model's digest)\n"
            "                       curl localhost:8080/metrics   (Prometheus)\n"
            "  see batching pay:    .venv/bin/python examples/mlp/train.py && "
            ".venv/bin/shipyard serve examples/mlp --api mlp\n"
            "  register and govern: .venv/bin/shipyard models register iris examples/iris/model "
            "--metric accuracy=0.97\n"
            "  read: README.md, docs/handlers.md, docs/configuration.md, docs/http-api.md, docs/registry.md"
        )
    finally:
        step("Stopping the server (SIGTERM: it drains in-flight requests, then exits)")
        process.terminate()
        print(f"exit code {process.wait(30)}")


if __name__ == "__main__":
    main()
