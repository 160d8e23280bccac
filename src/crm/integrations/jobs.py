"""Celery jobs of the sync engine: run a job, enqueue due syncs, reap jobs whose worker died."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm.core.db import session_scope
from crm.core.errors import AppError
from crm.integrations.engine import _LOCK_CLASS, RetryLater, fail_job, run_sync_job
from crm.models import Integration, SyncJob
from crm.worker.app import HARD_TIME_LIMIT, SOFT_TIME_LIMIT, celery_app
from crm.worker.runtime import run_async, sessionmaker

log = structlog.get_logger(__name__)

#: A running job whose heartbeat is older than this (and whose lock nobody holds) is failed.
STALE_AFTER = timedelta(minutes=10)
#: A job still queued after this long never found a worker: failed so that it does not block the integration.
QUEUED_TIMEOUT = timedelta(hours=6)
MAX_RETRIES = 5


def retry_delay(retries: int) -> float:
    """Exponential backoff with jitter: ~30 s, 60 s, 120 s … capped at 10 minutes."""
    base: float = min(600.0, 30.0 * 2.0**retries)
    return base * random.uniform(0.8, 1.2)  # noqa: S311


@celery_app.task(
    name="sync.run_job",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=SOFT_TIME_LIMIT,
    time_limit=HARD_TIME_LIMIT,
    max_retries=MAX_RETRIES,
)
def run_job(self: Any, job_id: int) -> str:
    """Run a sync job; idempotent (a terminal job is left alone, a running one resumes from its cursor)."""
    retries = int(self.request.retries or 0)
    try:
        return run_async(run_sync_job(job_id, retry_allowed=retries < MAX_RETRIES))
    except RetryLater as exc:
        raise self.retry(countdown=retry_delay(retries), exc=exc) from None


async def enqueue_due_body(
    now: datetime | None = None, maker: async_sessionmaker[AsyncSession] | None = None
) -> list[int]:
    """A `scheduled` job for each enabled integration that is due and has no active job.

    An integration never scheduled yet is due one interval after its creation (SPEC §18).
    """
    from crm.sync.service import start_sync

    now = now or datetime.now(UTC)
    interval = func.make_interval(0, 0, 0, 0, 0, Integration.sync_interval_minutes)
    active = select(SyncJob.id).where(
        SyncJob.integration_id == Integration.id, SyncJob.status.in_(("queued", "running"))
    )
    started: list[int] = []
    async with session_scope(maker or sessionmaker()) as db:
        due = (
            await db.execute(
                select(Integration.id, Integration.organization_id, Integration.sync_interval_minutes)
                .where(
                    Integration.enabled,
                    func.coalesce(Integration.next_sync_at, Integration.created_at + interval) <= now,
                    ~active.exists(),
                )
                .order_by(Integration.next_sync_at.nulls_first(), Integration.id)
                .limit(500)
            )
        ).all()
        for integration_id, organization_id, minutes in due:
            try:
                job = await start_sync(
                    db, organization_id=organization_id, integration_id=integration_id, trigger="scheduled"
                )
            except AppError as exc:  # an active job appeared meanwhile, or the provider is not installed
                log.info("sync_not_enqueued", integration_id=integration_id, code=exc.code)
            else:
                started.append(job.id)
            await db.execute(
                update(Integration)
                .where(Integration.id == integration_id)
                .values(next_sync_at=now + timedelta(minutes=max(minutes, 1)))
            )
    return started


@celery_app.task(name="sync.enqueue_due", acks_late=True, soft_time_limit=50, time_limit=60)
def enqueue_due() -> list[int]:
    return run_async(enqueue_due_body())


async def _lock_free(engine: AsyncEngine, job_id: int) -> bool:
    """True when no process holds the job's lock (its worker is gone)."""
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        got = await conn.scalar(select(func.pg_try_advisory_lock(_LOCK_CLASS, job_id % 2**31)))
        if got:
            await conn.scalar(select(func.pg_advisory_unlock(_LOCK_CLASS, job_id % 2**31)))
        return bool(got)


async def reap_stale_body(
    now: datetime | None = None, maker: async_sessionmaker[AsyncSession] | None = None
) -> list[int]:
    """Fail running jobs whose heartbeat stopped and jobs that never left the queue."""
    now = now or datetime.now(UTC)
    maker = maker or sessionmaker()
    async with maker() as db:
        rows = (
            await db.execute(
                select(SyncJob.id, SyncJob.status).where(
                    or_(
                        and_(SyncJob.status == "running", SyncJob.heartbeat_at < now - STALE_AFTER),
                        and_(
                            SyncJob.status == "queued",
                            func.coalesce(SyncJob.heartbeat_at, SyncJob.created_at) < now - QUEUED_TIMEOUT,
                        ),
                    )
                )
            )
        ).all()
    engine = maker.kw.get("bind")
    reaped: list[int] = []
    for job_id, status in rows:
        if isinstance(engine, AsyncEngine) and not await _lock_free(engine, job_id):
            continue  # its worker is alive, only slow to report
        reason = (
            "the worker running this sync stopped (no heartbeat)"
            if status == "running"
            else "the sync never started (no worker took it)"
        )
        if await fail_job(maker, job_id, reason):
            reaped.append(job_id)
            log.warning("sync_job_reaped", job_id=job_id, reason=reason)
    return reaped


@celery_app.task(name="sync.reap_stale", acks_late=True, soft_time_limit=50, time_limit=60)
def reap_stale() -> list[int]:
    return run_async(reap_stale_body())
