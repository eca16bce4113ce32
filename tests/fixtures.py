"""Handler classes for tests. A test project copies this file in as `handlers.py` and names a class here."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import numpy as np
from starlette.responses import PlainTextResponse

from shipyard import BadRequest


class Echo:
    def __init__(self, config: dict[str, Any], model_path: str | None) -> None:
        self.config = config
        self.model_path = model_path

    def predict(self, payload: Any) -> Any:
        if isinstance(payload, str | bytes):
            return payload
        return {"echo": payload}


class Context:
    """Declares headers and query, so it receives them."""

    def __init__(self, config: dict[str, Any], model_path: str | None) -> None:
        pass

    def predict(self, payload: Any, headers: Any, query: Any) -> Any:
        return {"header": headers.get("x-test"), "query": dict(query), "payload": payload}


class Failing:
    def __init__(self, config: dict[str, Any], model_path: str | None) -> None:
        pass

    def predict(self, payload: Any) -> Any:
        if isinstance(payload, dict) and payload.get("bad_input"):
            raise BadRequest("field 'x' must be positive")
        if isinstance(payload, dict) and payload.get("exit"):
            sys.exit("the handler called sys.exit")  # must become a 500, never end the replica
        raise RuntimeError("boom: internal detail that must not reach the client")


class Slow:
    """Sleeps `payload["sleep"]` seconds (default config.seconds), then answers."""

    def __init__(self, config: dict[str, Any], model_path: str | None) -> None:
        self.seconds = float(config.get("seconds", 0.5))
        self.started = threading.Event()

    def predict(self, payload: Any) -> Any:
        seconds = payload.get("sleep", self.seconds) if isinstance(payload, dict) else self.seconds
        time.sleep(seconds)
        return {"slept": seconds}


class SlowLoad(Echo):
    def __init__(self, config: dict[str, Any], model_path: str | None) -> None:
        time.sleep(float(config.get("load_seconds", 2)))
        super().__init__(config, model_path)


class BrokenInit:
    def __init__(self, config: dict[str, Any], model_path: str | None) -> None:
        raise ValueError("cannot open weights.bin")

    def predict(self, payload: Any) -> Any:
        return payload


class BatchRecorder:
    """Answers each payload with the size of the batch it arrived in, proving batching from inside."""

    def __init__(self, config: dict[str, Any], model_path: str | None) -> None:
        self.delay = float(config.get("delay", 0.0))
        self.sizes: list[int] = []

    def predict(self, payload: Any) -> Any:
        raise AssertionError("predict must not be called when predict_batch exists and batching is on")

    def predict_batch(self, payloads: list[Any]) -> list[Any]:
        self.sizes.append(len(payloads))
        time.sleep(self.delay)
        return [{"batch_size": len(payloads), "payload": p} for p in payloads]


class PerItemOnly:
    """No predict_batch: batching must fall back to predict per item."""

    def __init__(self, config: dict[str, Any], model_path: str | None) -> None:
        pass

    def predict(self, payload: Any) -> Any:
        if payload == "fail":
            raise RuntimeError("this item fails")
        return {"single": payload}


class WrongLength:
    def __init__(self, config: dict[str, Any], model_path: str | None) -> None:
        pass

    def predict(self, payload: Any) -> Any:
        return payload

    def predict_batch(self, payloads: list[Any]) -> list[Any]:
        return payloads[:-1]


class FailingBatch:
    def __init__(self, config: dict[str, Any], model_path: str | None) -> None:
        pass

    def predict(self, payload: Any) -> Any:
        return payload

    def predict_batch(self, payloads: list[Any]) -> list[Any]:
        raise RuntimeError("the whole batch failed")


class Types:
    """Returns what payload["kind"] names, to check the encoding of every supported result type."""

    def __init__(self, config: dict[str, Any], model_path: str | None) -> None:
        pass

    def predict(self, payload: Any) -> Any:
        kind = payload["kind"]
        return {
            "array": np.arange(6, dtype=np.int64).reshape(2, 3),
            "float32": np.float32(0.5),
            "scalar": {"n": np.int64(7), "x": np.float64(1.5), "ok": np.bool_(True)},
            "str": "plain text",
            "bytes": b"\x00\x01binary",
            "response": PlainTextResponse("custom", status_code=201, headers={"x-custom": "yes"}),
            "object": object(),
        }[kind]


class Tensors:
    """For OIP v2: doubles one tensor, or answers a dict of named outputs for several."""

    def __init__(self, config: dict[str, Any], model_path: str | None) -> None:
        pass

    def predict(self, payload: Any) -> Any:
        if isinstance(payload, dict):
            return {"sum": payload["a"] + payload["b"], "labels": np.array(["x", "y"])}
        return payload * 2


class AsyncEcho:
    """`async def predict`: awaited on the replica's event loop, at most max_concurrency at once."""

    def __init__(self, config: dict[str, Any], model_path: str | None) -> None:
        self.running = 0
        self.most = 0

    async def predict(self, payload: Any) -> Any:
        import asyncio

        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(payload.get("sleep", 0) if isinstance(payload, dict) else 0)
        finally:
            self.running -= 1
        if payload == "fail":
            raise RuntimeError("async boom")
        return {"echo": payload, "most_at_once": self.most}


class AsyncBatch:
    """`async def predict_batch`: the batch is awaited on the event loop."""

    def __init__(self, config: dict[str, Any], model_path: str | None) -> None:
        pass

    async def predict_batch(self, payloads: list[Any]) -> list[Any]:
        import asyncio

        await asyncio.sleep(0.05)
        return [{"batch_size": len(payloads), "payload": p} for p in payloads]


class Rendezvous:
    """Each prediction waits until config.parties predictions run at once (a barrier), then names its thread:
    it proves from inside that that many ran side by side."""

    def __init__(self, config: dict[str, Any], model_path: str | None) -> None:
        self.barrier = threading.Barrier(int(config["parties"]), timeout=float(config.get("timeout", 10)))

    def predict(self, payload: Any) -> Any:
        try:
            self.barrier.wait()
        except threading.BrokenBarrierError:
            raise BadRequest("fewer predictions ran at once than config.parties") from None
        return {"thread": threading.current_thread().name}


class ExitInInit:
    def __init__(self, config: dict[str, Any], model_path: str | None) -> None:
        import sys

        sys.exit("bye")

    def predict(self, payload: Any) -> Any:
        return payload


class InterruptInInit:
    def __init__(self, config: dict[str, Any], model_path: str | None) -> None:
        raise KeyboardInterrupt

    def predict(self, payload: Any) -> Any:
        return payload
