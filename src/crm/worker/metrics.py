"""Metrics of a Celery worker: task counts, durations and failures by task, and the queue depth.

Tasks run in the worker's pool processes; each records its samples in `PROMETHEUS_MULTIPROC_DIR`
(`crm worker` makes one when `WORKER_METRICS_PORT` is set and none is given), and the worker's main
process serves their sum on `WORKER_METRICS_PORT`, together with the broker queue's length read at
scrape time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

import structlog
from celery.signals import (
    task_failure,
    task_postrun,
    task_prerun,
    task_retry,
    worker_init,
    worker_process_shutdown,
)
from prometheus_client import CollectorRegistry, multiprocess, start_http_server
from prometheus_client.metrics_core import Metric
from redis import Redis

from crm.config import get_settings
from crm.core.metrics import TASK_DURATION, TASKS, TASKS_RUNNING, gauge

log = structlog.get_logger(__name__)

QUEUES = ("crm",)
_started: dict[str, tuple[float, str]] = {}


def _name(task: Any, sender: Any = None) -> str:
    return str(getattr(task, "name", None) or getattr(sender, "name", None) or "unknown")


@task_prerun.connect
def _prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    name = _name(task)
    if task_id:
        _started[task_id] = (time.perf_counter(), name)
    TASKS_RUNNING.labels(name).inc()


@task_postrun.connect
def _postrun(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
    started = _started.pop(task_id, None) if task_id else None
    name = started[1] if started else _name(task)
    TASKS_RUNNING.labels(name).dec()
    if started is not None:
        TASK_DURATION.labels(name).observe(time.perf_counter() - started[0])
    if state == "SUCCESS":
        TASKS.labels(name, "succeeded").inc()


@task_failure.connect
def _failure(sender: Any = None, **_: Any) -> None:
    TASKS.labels(_name(sender), "failed").inc()


@task_retry.connect
def _retry(sender: Any = None, **_: Any) -> None:
    TASKS.labels(_name(sender), "retried").inc()


@worker_process_shutdown.connect
def _process_gone(pid: int | None = None, **_: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid or os.getpid())  # type: ignore[no-untyped-call]


class QueueDepth:
    """`crm_celery_queue_length`: LLEN of each broker queue (Redis brokers), read at scrape time."""

    def __init__(self, broker_url: str) -> None:
        self.client = (
            Redis.from_url(broker_url, socket_timeout=1, socket_connect_timeout=1)
            if broker_url.startswith(("redis://", "rediss://", "unix://"))
            else None
        )

    def collect(self) -> Iterable[Metric]:
        if self.client is None:
            return []
        try:
            values = [(queue, self.client.llen(queue)) for queue in QUEUES]
        except Exception:  # the broker is away: no sample rather than a failed scrape
            return []
        return [gauge("crm_celery_queue_length", "Messages waiting in the broker queue", ["queue"], values)]


def registry(broker_url: str) -> CollectorRegistry:
    """The worker's registry: every pool process's samples plus the queue depth."""
    reg = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(reg)  # type: ignore[no-untyped-call]
    else:
        from prometheus_client import REGISTRY

        reg = REGISTRY
    reg.register(QueueDepth(broker_url))
    return reg


@worker_init.connect
def _serve(**_: Any) -> None:
    settings = get_settings()
    if not settings.worker_metrics_port:
        return
    try:
        start_http_server(
            settings.worker_metrics_port, addr=settings.host, registry=registry(settings.celery_broker_url)
        )
    except OSError as exc:  # the port is taken: the worker runs on without its endpoint
        log.warning("worker_metrics_unavailable", port=settings.worker_metrics_port, error=str(exc))
    else:
        log.info("worker_metrics_serving", port=settings.worker_metrics_port)
