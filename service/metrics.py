"""Prometheus metrics of one app: requests per route, latency per route and per pipeline stage,
catalogue size.  Each app has its own registry (no process globals), served at ``/metrics``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("skulens_requests", "HTTP requests by route, method and status code",
                                ("route", "method", "status"), registry=self.registry)
        self.latency = Histogram("skulens_request_seconds", "HTTP request latency by route and method",
                                 ("route", "method"), buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.stages = Histogram("skulens_stage_seconds", "pipeline stage latency (decode, detect, background, "
                                "colour, ocr, embed, rank)", ("stage",), buckets=_LATENCY_BUCKETS,
                                registry=self.registry)
        self.catalogue = Gauge("skulens_catalogue_size", "catalogue size", ("kind",), registry=self.registry)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def observe_stages(self, timings_ms: dict[str, float]) -> None:
        for stage, ms in timings_ms.items():
            self.stages.labels(stage).observe(ms / 1000.0)

    def render(self, products: int, images: int, vectors: int) -> bytes:
        for kind, n in (("products", products), ("images", images), ("vectors", vectors)):
            self.catalogue.labels(kind).set(n)
        return generate_latest(self.registry)
