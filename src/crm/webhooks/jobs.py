"""Celery jobs: deliver one subscription's due deliveries; sweep for due ones."""

from __future__ import annotations

import asyncio

from crm.outbox.queue import clear, enqueue_once
from crm.webhooks.delivery import deliver_pending, due_webhooks
from crm.worker.app import celery_app
from crm.worker.runtime import job_session, run_async, sessionmaker


def _flag(webhook_id: int) -> str:
    return f"crm:webhooks:{webhook_id}:queued"


def _retry_flag(webhook_id: int) -> str:
    return f"crm:webhooks:{webhook_id}:retry"


def queue_delivery(webhook_id: int, countdown: float | None = None) -> None:
    """Queue the subscription's delivery job unless one is queued and not started yet (blocking)."""
    enqueue_once(
        _flag(webhook_id), lambda: deliver_webhook.apply_async(args=[webhook_id], countdown=countdown)
    )


def queue_retry(webhook_id: int, countdown: float) -> None:
    """One scheduled retry per subscription at a time, whatever the number of new events."""
    enqueue_once(
        _retry_flag(webhook_id),
        lambda: deliver_webhook.apply_async(args=[webhook_id], kwargs={"retry": True}, countdown=countdown),
        ttl=countdown + 60,
    )


async def _deliver(webhook_id: int, retry: bool) -> None:
    await asyncio.to_thread(clear, _retry_flag(webhook_id) if retry else _flag(webhook_id))
    result = await deliver_pending(sessionmaker(), webhook_id)
    if result.busy:  # another run holds it; look again shortly in case it just finished
        await asyncio.to_thread(queue_delivery, webhook_id, 1.0)
    elif result.more:
        await asyncio.to_thread(queue_delivery, webhook_id)
    elif result.retry_in is not None:
        await asyncio.to_thread(queue_retry, webhook_id, result.retry_in)


@celery_app.task(name="webhooks.deliver", acks_late=True, soft_time_limit=120, time_limit=150)
def deliver_webhook(webhook_id: int, retry: bool = False) -> None:
    """Send a subscription's due deliveries in order (safe to run twice: one sender at a time)."""
    run_async(_deliver(webhook_id, retry))


async def _sweep() -> int:
    async with job_session() as session:
        ids = await due_webhooks(session)
    for webhook_id in ids:
        await asyncio.to_thread(deliver_webhook.apply_async, args=[webhook_id])
    return len(ids)


@celery_app.task(name="webhooks.sweep", acks_late=True, soft_time_limit=50, time_limit=60)
def sweep_webhooks() -> int:
    """Queue a delivery job for every subscription with a delivery due (lost sends, retries)."""
    return run_async(_sweep())
