"""The gateway's /metrics: per-API counts, latency histograms, in-flight, queue length and replica counts.

Counted where every request passes, in the one gateway process, so the totals stay right however many
replicas come and go (a sum over replicas' own counters loses the ones that were replaced).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shipyard.runtime.local.admission import Lane
from shipyard.runtime.local.window import Window
from shipyard.serving.metrics import LATENCY_BUCKETS

if TYPE_CHECKING:
    from shipyard.runtime.local.gateway import Gateway


class GatewayMetrics:
    content_type = CONTENT_TYPE_LATEST.encode()

    def __init__(self, gateway: Gateway) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "shipyard_gateway_requests",
            "Requests answered by the gateway, by API (or splitter) and status code.",
            ["api", "code"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "shipyard_gateway_request_duration_seconds",
            "Time from a request's arrival at the gateway to its answer, queueing included.",
            ["api"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_LiveState(gateway))
        self._children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}
        self._splitter_windows: dict[str, Window] = {}

    def observe(self, lane: Lane, status: int, seconds: float) -> None:
        lane.window.record(time.time(), status, seconds)
        self._count(lane.route.name, status, seconds)

    def observe_splitter(self, name: str, status: int, seconds: float) -> None:
        self.splitter_window(name).record(time.time(), status, seconds)
        self._count(name, status, seconds)

    def splitter_window(self, name: str) -> Window:
        return self._splitter_windows.setdefault(name, Window())

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def _count(self, api: str, status: int, seconds: float) -> None:
        key = (api, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self._requests.labels(api, str(status)),
                self._latency.labels(api),
            )
        children[0].inc()
        children[1].observe(seconds)


class _LiveState(Collector):
    """Gauges read from the lanes at scrape time."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    def collect(self) -> Iterator[Metric]:
        lanes = self._gateway.lanes
        in_flight = GaugeMetricFamily(
            "shipyard_gateway_in_flight_requests", "Requests sent to replicas and not yet answered.", labels=["api"]
        )
        queued = GaugeMetricFamily(
            "shipyard_gateway_queue_length", "Requests waiting in the gateway for a free replica.", labels=["api"]
        )
        replicas = GaugeMetricFamily(
            "shipyard_gateway_ready_replicas", "Replicas the gateway routes to.", labels=["api"]
        )
        for name, lane in lanes.items():
            in_flight.add_metric([name], lane.in_flight)
            queued.add_metric([name], lane.queued)
            replicas.add_metric([name], len(lane.route.replicas))
        yield from (in_flight, queued, replicas)
