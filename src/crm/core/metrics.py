"""Prometheus metrics of the HTTP layer.

With several server processes (`crm serve --workers N`), set `PROMETHEUS_MULTIPROC_DIR` to an empty
directory before start: every process then writes its samples there and `/metrics` adds them up.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

REQUESTS = Counter(
    "crm_http_requests_total",
    "HTTP requests by method, route template and status",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "crm_http_request_duration_seconds",
    "HTTP request latency by method and route template",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
HOT_READS = Counter(
    "crm_hot_reads_total",
    "Record reads answered by the hot-read path (the rest of those routes' requests go to the routers)",
    ["route"],
)
IN_FLIGHT = Gauge("crm_http_requests_in_flight", "HTTP requests being served", multiprocess_mode="livesum")


def render_latest() -> bytes:
    """The exposition text: this process's registry, or every process's in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()
