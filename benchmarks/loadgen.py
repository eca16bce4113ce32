"""A small closed-loop HTTP/1.1 load generator: N keep-alive connections, each sending one request at a time.

Written on asyncio streams rather than an HTTP client library so that the generator, not the client, is
never the bottleneck when measuring a Python server; run it pinned to its own core.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class LoadResult:
    concurrency: int
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def build_request(host: str, port: int, path: str, body: bytes, content_type: str = "application/json") -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def _connection(
    host: str,
    port: int,
    request: bytes,
    stop_at: float,
    record_from: float,
    latencies: list[float],
    errors: list[int],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            started = time.perf_counter()
            if started >= stop_at:
                return
            writer.write(request)
            status = await _read_response(reader)
            if started >= record_from:
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    errors.append(status)
    finally:
        writer.close()


async def run_load(host: str, port: int, request: bytes, concurrency: int, seconds: float, warmup: float) -> LoadResult:
    latencies: list[float] = []
    errors: list[int] = []
    start = time.perf_counter()
    record_from, stop_at = start + warmup, start + warmup + seconds
    await asyncio.gather(
        *(_connection(host, port, request, stop_at, record_from, latencies, errors) for _ in range(concurrency))
    )
    elapsed = max(time.perf_counter() - record_from, 1e-9)
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("nan")
    return LoadResult(
        concurrency,
        len(latencies),
        len(errors),
        round(elapsed, 2),
        len(latencies) / elapsed,
        statistics.median(ordered) * 1000 if ordered else float("nan"),
        p99 * 1000,
    )


def load(host: str, port: int, request: bytes, concurrency: int, seconds: float, warmup: float) -> LoadResult:
    try:
        import uvloop

        return uvloop.run(run_load(host, port, request, concurrency, seconds, warmup))
    except ImportError:
        return asyncio.run(run_load(host, port, request, concurrency, seconds, warmup))
