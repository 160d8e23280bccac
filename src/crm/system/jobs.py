"""Housekeeping of shared tables."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete

from crm.models import IdempotencyKey
from crm.worker.app import celery_app
from crm.worker.runtime import job_session, run_async


async def purge_idempotency_keys_body(now: datetime | None = None) -> int:
    """Delete idempotency keys past their 24 h; returns how many went."""
    async with job_session() as db:
        result = await db.execute(
            delete(IdempotencyKey)
            .where(IdempotencyKey.expires_at < (now or datetime.now(UTC)))
            .returning(IdempotencyKey.id)
        )
        return len(result.scalars().all())


@celery_app.task(name="system.purge_idempotency_keys", acks_late=True)
def purge_idempotency_keys() -> int:
    return run_async(purge_idempotency_keys_body())
