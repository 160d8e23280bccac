"""Prometheus metrics: HTTP, the database pool, the result cache, Celery tasks, jobs and the queue.

With several server processes (`crm serve --workers N`, or several `crm serve` behind nginx), set
`PROMETHEUS_MULTIPROC_DIR` to one empty directory before they start: every process then writes its
samples there and `/metrics` of any of them adds them up. A Celery worker does the same with its pool
processes and serves them on `WORKER_METRICS_PORT` (`crm.worker.metrics`).

Values that are read rather than counted (queue depth, job outcomes) are sampled when scraped and
appended by `render_latest(extra=...)`.
"""

from __future__ import annotations

import functools
import os
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

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
FAST_CREATES = Counter(
    "crm_fast_creates_total",
    "Record creates answered by the fast create path (the rest of those routes' requests go to the routers)",
    ["route"],
)
FAST_CREATE_BATCH = Histogram(
    "crm_fast_create_batch_size",
    "Requests written by one statement of the fast create path (more than one while its writers are busy)",
    buckets=(1, 2, 4, 8, 16, 32),
)
FAST_READ_BATCH = Histogram(
    "crm_fast_read_batch_size",
    "Requests answered by one statement of the fast read path (more than one while its readers are busy)",
    buckets=(1, 2, 4, 8, 16, 32),
)
HOT_READS = Counter(
    "crm_hot_reads_total",
    "Record reads answered by the hot-read path (the rest of those routes' requests go to the routers)",
    ["route"],
)
IN_FLIGHT = Gauge("crm_http_requests_in_flight", "HTTP requests being served", multiprocess_mode="livesum")

# --- database pool (SQLAlchemy QueuePool of each process) ------------------------------------------
POOL_CHECKED_OUT = Gauge(
    "crm_db_pool_checked_out",
    "Database connections in use (checked out of the pool)",
    ["pool"],
    multiprocess_mode="livesum",
)
POOL_OVERFLOW = Gauge(
    "crm_db_pool_overflow",
    "Connections open beyond the pool size (negative: pool slots not opened yet)",
    ["pool"],
    multiprocess_mode="livesum",
)
POOL_SIZE = Gauge(
    "crm_db_pool_size", "Configured pool size (without overflow)", ["pool"], multiprocess_mode="livesum"
)
POOL_WAITING = Gauge(
    "crm_db_pool_waiting",
    "Callers waiting for a pooled connection",
    ["pool"],
    multiprocess_mode="livesum",
)
POOL_CHECKOUTS = Counter("crm_db_pool_checkouts_total", "Connections handed out by the pool", ["pool"])

# --- result cache (crm.core.cache) -------------------------------------------------------------------
CACHE = Counter(
    "crm_cache_requests_total",
    "Result cache lookups by cached value and result (hit, miss, or bypass when Redis is away)",
    ["name", "result"],
)

# --- Celery tasks (observed by crm.worker.metrics in the process that runs them) ---------------------
TASKS = Counter(
    "crm_celery_tasks_total",
    "Celery tasks finished, by task name and outcome (succeeded, failed, retried)",
    ["task", "outcome"],
)
TASK_DURATION = Histogram(
    "crm_celery_task_duration_seconds",
    "Celery task run time by task name",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
TASKS_RUNNING = Gauge(
    "crm_celery_tasks_running", "Celery tasks running now", ["task"], multiprocess_mode="livesum"
)

_engines: weakref.WeakSet[Any] = weakref.WeakSet()


def _waiting(pool: Any) -> int:
    """Callers blocked in the pool's checkout (the asyncio queue's getters), 0 when unknown."""
    queue = getattr(pool, "_pool", None)
    inner = getattr(queue, "__dict__", {}).get("_queue")  # created lazily on first use
    getters = getattr(inner, "_getters", ())
    return sum(1 for waiter in getters if not waiter.done())


@functools.cache
def _pool_gauges(name: str) -> tuple[Gauge, Gauge, Gauge, Gauge]:
    """The pool's labelled gauges, looked up once (they are set on every checkout and checkin)."""
    return (
        POOL_CHECKED_OUT.labels(name),
        POOL_OVERFLOW.labels(name),
        POOL_SIZE.labels(name),
        POOL_WAITING.labels(name),
    )


def _sample(pool: Any, name: str) -> None:
    checked_out, overflow, size, waiting = _pool_gauges(name)
    try:
        checked_out.set(pool.checkedout())
        overflow.set(pool.overflow())
        size.set(pool.size())
        waiting.set(_waiting(pool))
    except (AttributeError, TypeError):  # a pool without these figures (NullPool, StaticPool)
        return


def observe_pool(engine: AsyncEngine, name: str = "main") -> None:
    """Keep the pool gauges of `engine` current: updated on every checkout and checkin."""
    pool = engine.sync_engine.pool
    if not hasattr(pool, "checkedout"):
        return
    checkouts = POOL_CHECKOUTS.labels(name)

    def on_checkout(*_: Any) -> None:
        checkouts.inc()
        _sample(pool, name)

    def on_checkin(*_: Any) -> None:
        _sample(pool, name)

    event.listen(pool, "checkout", on_checkout)
    event.listen(pool, "checkin", on_checkin)
    _engines.add(engine)
    _sample(pool, name)


def sample_pools() -> None:
    """Refresh the pool gauges of this process's engines (just before a scrape)."""
    for engine in list(_engines):
        _sample(engine.sync_engine.pool, "main")


def gauge(name: str, documentation: str, labels: Sequence[str], values: Iterable[tuple[Any, ...]]) -> Metric:
    """A gauge sampled now: `values` are label values followed by the value."""
    family = GaugeMetricFamily(name, documentation, labels=list(labels))
    for *label_values, value in values:
        family.add_metric([str(v) for v in label_values], float(value))
    return family


class _Sampled:
    def __init__(self, metrics: Iterable[Metric]) -> None:
        self.metrics = list(metrics)

    def collect(self) -> Iterable[Metric]:
        return self.metrics


def render_latest(extra: Iterable[Metric] = ()) -> bytes:
    """The exposition text: this process's registry, or every process's in multiprocess mode, then
    the `extra` metrics sampled for this scrape."""
    sample_pools()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        text = generate_latest(registry)
    else:
        text = generate_latest()
    sampled = list(extra)
    if sampled:
        registry = CollectorRegistry()
        registry.register(_Sampled(sampled))
        text += generate_latest(registry)
    return text
