"""Celery jobs of the sync engine: run a job, enqueue due syncs, send again jobs whose message never
reached a worker, reap jobs whose worker died, and run finish hooks of reaped jobs."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from celery.signals import worker_ready
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm.core.db import session_scope
from crm.core.errors import AppError
from crm.integrations.engine import _LOCK_CLASS, RetryLater, fail_job, run_finish_hooks, run_sync_job
from crm.models import Integration, SyncJob
from crm.worker.app import HARD_TIME_LIMIT, SOFT_TIME_LIMIT, celery_app
from crm.worker.runtime import run_async, sessionmaker

log = structlog.get_logger(__name__)

#: A running job whose heartbeat is older than this (and whose lock nobody holds) is failed.
STALE_AFTER = timedelta(minutes=10)
#: A job still queued after this long never found a worker: failed so that it does not block the integration.
QUEUED_TIMEOUT = timedelta(hours=6)
MAX_RETRIES = 5
#: A queued job whose message the broker never accepted is sent again once it is this old (the API
#: sends right after its commit, so by then that attempt has failed).
UNSENT_GRACE = timedelta(seconds=30)
#: A queued job whose message was accepted is sent again when no worker took it this long after
#: (a broker restarted without persistence loses its queue). Running a job twice does nothing.
RESEND_AFTER = timedelta(minutes=10)
#: Hooks of a reaped job run in a task of their own; this bounds each hook there.
REAPED_HOOK_TIMEOUT = 240.0
FINISH_HOOKS_LIMIT = 900


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
    delay = retry_delay(retries)
    try:
        return run_async(run_sync_job(job_id, retry_allowed=retries < MAX_RETRIES, retry_in=delay))
    except RetryLater as exc:
        raise self.retry(countdown=delay, exc=exc) from None


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


def send_job(job_id: int) -> None:
    run_job.apply_async(args=[job_id])


async def requeue_queued_body(
    now: datetime | None = None,
    maker: async_sessionmaker[AsyncSession] | None = None,
    send: Callable[[int], None] = send_job,
) -> list[int]:
    """Send again the queued jobs no worker can have: their send failed (broker away) or their
    message was lost. Idempotent: a job that runs already, or is terminal, ignores a second message
    (its advisory lock and status guard). Stops at the first send that fails (the broker is still
    away); the next run tries again."""
    now = now or datetime.now(UTC)
    maker = maker or sessionmaker()
    async with maker() as db:
        ids = (
            await db.scalars(
                select(SyncJob.id)
                .where(
                    SyncJob.status == "queued",
                    or_(
                        and_(SyncJob.enqueued_at.is_(None), SyncJob.created_at < now - UNSENT_GRACE),
                        SyncJob.enqueued_at < now - RESEND_AFTER,
                    ),
                )
                .order_by(SyncJob.created_at, SyncJob.id)
                .limit(500)
            )
        ).all()
    sent: list[int] = []
    for job_id in ids:
        try:
            send(job_id)
        except Exception as exc:  # the broker is still away
            log.warning("sync_requeue_failed", job_id=job_id, error=f"{type(exc).__name__}: {exc}"[:300])
            break
        sent.append(job_id)
    if sent:
        async with session_scope(maker) as db:
            await db.execute(
                update(SyncJob)
                .where(SyncJob.id.in_(sent), SyncJob.status == "queued")
                .values(enqueued_at=now)
            )
        log.info("sync_jobs_requeued", job_ids=sent)
    return sent


@celery_app.task(name="sync.requeue_queued", acks_late=True, soft_time_limit=50, time_limit=60)
def requeue_queued() -> list[int]:
    return run_async(requeue_queued_body())


@worker_ready.connect
def _requeue_at_worker_start(**_: Any) -> None:
    """A worker coming up (after an outage, say) looks for jobs left behind at once."""
    try:
        requeue_queued.apply_async(countdown=1)
    except Exception:  # the broker is away again: beat's run every minute catches up
        log.warning("sync_requeue_not_sent", exc_info=True)


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
    """Fail running jobs whose heartbeat stopped and jobs that never left the queue.

    Each job's failure is committed first; its finish hooks (alerts, the low-stock pass) then run
    in a task of their own (`sync.finish_hooks`), so however long they take the job is terminal."""
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
    for job_id in reaped:
        try:
            finish_hooks.apply_async(args=[job_id])
        except Exception:  # no broker: run them here, briefly
            log.warning("sync_finish_hooks_not_sent", job_id=job_id, exc_info=True)
            await run_finish_hooks(maker, job_id, limit=10.0)
    return reaped


@celery_app.task(name="sync.reap_stale", acks_late=True, soft_time_limit=50, time_limit=60)
def reap_stale() -> list[int]:
    return run_async(reap_stale_body())


@celery_app.task(
    name="sync.finish_hooks",
    acks_late=True,
    soft_time_limit=FINISH_HOOKS_LIMIT,
    time_limit=FINISH_HOOKS_LIMIT + 60,
)
def finish_hooks(job_id: int) -> list[str]:
    """The finish hooks of a job ended from outside its run (the reaper)."""
    return run_async(run_finish_hooks(sessionmaker(), job_id, limit=REAPED_HOOK_TIMEOUT))
