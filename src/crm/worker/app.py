"""The Celery application: Redis (or RabbitMQ) broker, JSON only, late acks."""

from __future__ import annotations

from celery import Celery

from crm.config import get_settings
from crm.worker import broker
from crm.worker.schedule import beat_schedule

HARD_TIME_LIMIT = 3600
SOFT_TIME_LIMIT = 3300

settings = get_settings()
broker.install()

celery_app = Celery("crm", broker=settings.celery_broker_url, include=["crm.worker.jobs_index"])
celery_app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    result_backend=None,
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_time_limit=HARD_TIME_LIMIT,
    task_soft_time_limit=SOFT_TIME_LIMIT,
    # A message not acked within this window is redelivered; it must outlast the hard limit.
    broker_transport_options={"visibility_timeout": HARD_TIME_LIMIT + 600},
    # A broker outage never ends the worker: it reconnects for as long as it takes (the default
    # gives up after 100 tries). Running tasks go on meanwhile (a job does not need the broker
    # while it runs); cancelling them on connection loss would restart every long sync on each blip.
    broker_connection_retry=True,
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=None,
    worker_cancel_long_running_tasks_on_connection_loss=False,
    timezone="UTC",
    enable_utc=True,
    beat_schedule=beat_schedule,
    worker_hijack_root_logger=False,
    task_default_queue="crm",
)

import crm.worker.metrics  # noqa: E402,F401  (task metrics and the worker's /metrics endpoint)
