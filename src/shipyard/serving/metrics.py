"""A replica's Prometheus metrics, in a registry of its own (no global state for tests to reset)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
CONTENT_TYPE = CONTENT_TYPE_LATEST
UNMATCHED_ROUTE = "unmatched"
"""The `route` label of requests to paths no route matches: one series, however many paths are scanned."""


class ReplicaMetrics:
    def __init__(self, api: str) -> None:
        self.api = api
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "shipyard_requests",
            "Requests answered, by route and status code.",
            ["api", "route", "code"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "shipyard_request_duration_seconds",
            "Time from request to response, by route.",
            ["api", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "shipyard_in_flight_requests",
            "Requests admitted and not yet answered.",
            ["api"],
            registry=self.registry,
        ).labels(api)
        self.queue_length = Gauge(
            "shipyard_queue_length",
            "Admitted requests waiting for a prediction slot.",
            ["api"],
            registry=self.registry,
        ).labels(api)
        self.batch_size = Histogram(
            "shipyard_batch_size",
            "Requests per predict_batch call.",
            ["api"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        ).labels(api)
        self.batch_wait = Histogram(
            "shipyard_batch_wait_seconds",
            "Time a request waited in the batcher before its batch ran.",
            ["api"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        ).labels(api)
        self._unknown = Counter(
            "shipyard_unknown_categories",
            "Values outside a schema field's enum that were let through.",
            ["api", "field"],
            registry=self.registry,
        )
        self.ready = Gauge("shipyard_ready", "1 once the handler has loaded.", ["api"], registry=self.registry).labels(
            api
        )
        self._children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}

    def observe(self, route: str, code: int, seconds: float) -> None:
        key = (route, code)
        children = self._children.get(key)
        if children is None:
            children = (
                self._requests.labels(self.api, route, str(code)),
                self._latency.labels(self.api, route),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def unknown_category(self, field: str) -> None:
        self._unknown.labels(self.api, field).inc()

    def track(self, in_flight: Callable[[], float], queued: Callable[[], float]) -> None:
        self.in_flight.set_function(in_flight)
        self.queue_length.set_function(queued)

    def render(self) -> bytes:
        return generate_latest(self.registry)
