"""Prometheus metrics of one server: requests, latency, model batch sizes, queue depth (own registry, so
several apps in one process, as in tests, never collide)."""

from __future__ import annotations

from .._optional import require


class Metrics:
    def __init__(self) -> None:
        prom = require("prometheus_client", "serve", "prometheus-client")
        self._prom = prom
        self.registry = prom.CollectorRegistry()
        self.requests = prom.Counter(
            "ragstore_requests_total",
            "HTTP requests (key: the API key's name, never the key)",
            ["method", "route", "status", "key"],
            registry=self.registry,
        )
        self.latency = prom.Histogram(
            "ragstore_request_seconds",
            "request latency",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.batch_size = prom.Histogram(
            "ragstore_model_batch_size",
            "texts per model call",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=self.registry,
        )
        self.queue_depth = prom.Gauge("ragstore_queue_depth", "texts waiting for the model", registry=self.registry)

    def observe(self, method: str, route: str, status: int, seconds: float, key: str = "anonymous") -> None:
        self.requests.labels(method, route, str(status), key).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return self._prom.generate_latest(self.registry), self._prom.CONTENT_TYPE_LATEST
