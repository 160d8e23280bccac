"""Housekeeping jobs of the auth feature."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, or_

from crm.models import RateLimitCounter, UserSession
from crm.worker.app import celery_app
from crm.worker.runtime import job_session, run_async

#: Revoked or expired sessions are kept this long for the user's security history.
KEEP_DAYS = 30


async def purge_expired_sessions_body(now: datetime | None = None) -> int:
    """Delete sessions that expired or were revoked over KEEP_DAYS ago, and stale rate counters."""
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=KEEP_DAYS)
    async with job_session() as db:
        result = await db.execute(
            delete(UserSession)
            .where(or_(UserSession.expires_at < cutoff, UserSession.revoked_at < cutoff))
            .returning(UserSession.id)
        )
        deleted = len(result.scalars().all())
        await db.execute(delete(RateLimitCounter).where(RateLimitCounter.expires_at < now))
    return deleted


@celery_app.task(name="auth.purge_expired_sessions", acks_late=True)
def purge_expired_sessions() -> int:
    return run_async(purge_expired_sessions_body())
