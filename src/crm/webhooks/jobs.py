"""Celery jobs: deliver one subscription's due deliveries; sweep for due ones."""

from __future__ import annotations

import asyncio

from crm.webhooks.delivery import deliver_pending, due_webhooks
from crm.worker.app import celery_app
from crm.worker.runtime import job_session, run_async, sessionmaker


async def _deliver(webhook_id: int) -> None:
    result = await deliver_pending(sessionmaker(), webhook_id)
    if result.more:
        await asyncio.to_thread(deliver_webhook.apply_async, args=[webhook_id])
    elif result.retry_in is not None:
        await asyncio.to_thread(deliver_webhook.apply_async, args=[webhook_id], countdown=result.retry_in)


@celery_app.task(name="webhooks.deliver", acks_late=True, soft_time_limit=120, time_limit=150)
def deliver_webhook(webhook_id: int) -> None:
    """Send a subscription's due deliveries in order (safe to run twice: a lease keeps one sender)."""
    run_async(_deliver(webhook_id))


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
