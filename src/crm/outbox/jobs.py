"""Celery jobs: the outbox relay (nudged after each commit that wrote events, and swept by beat)."""

from __future__ import annotations

import asyncio

from crm.outbox import consumers as _consumers  # noqa: F401  (registers the consumers)
from crm.outbox.queue import clear
from crm.outbox.relay import purge_published, relay
from crm.outbox.service import RELAY_FLAG
from crm.webhooks.jobs import queue_delivery
from crm.worker.app import celery_app
from crm.worker.runtime import job_session, run_async, sessionmaker


async def _relay() -> int:
    await asyncio.to_thread(clear, RELAY_FLAG)
    result = await relay(sessionmaker())
    for webhook_id in sorted(result.webhooks):
        await asyncio.to_thread(queue_delivery, webhook_id)
    return result.events


@celery_app.task(name="outbox.relay", acks_late=True, soft_time_limit=120, time_limit=150)
def relay_outbox() -> int:
    """Publish unpublished events (safe to run twice: per-organization locks, unique deliveries)."""
    return run_async(_relay())


async def _sweep() -> int:
    published = await _relay()
    async with job_session() as session:
        await purge_published(session)
    return published


@celery_app.task(name="outbox.sweep", acks_late=True, soft_time_limit=120, time_limit=150)
def sweep_outbox() -> int:
    """Beat: relay whatever a lost nudge left behind; drop events published 30 days ago."""
    return run_async(_sweep())
