"""Celery jobs of imports: run a job; send again jobs whose enqueue failed; take over jobs whose
worker died (SPEC §20.7)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.core.db import session_scope
from crm.imports.engine import MAX_ATTEMPTS, OUT_OF_MEMORY, fail_job, lock_free, run_import
from crm.imports.repository import queued_since, running_silent_since
from crm.models import ImportJob
from crm.worker.app import celery_app
from crm.worker.runtime import run_async, sessionmaker

log = structlog.get_logger(__name__)

#: A job still queued this long after it was last handed to the broker is sent again (its enqueue
#: failed, or its message was lost with the broker's data). A duplicate message is harmless: the job's
#: lock and status make every delivery but one a no-op.
REQUEUE_AFTER = timedelta(seconds=60)
#: A running job silent this long (no heartbeat) whose lock nobody holds lost its whole worker.
STALE_AFTER = timedelta(seconds=60)
#: A job that never started within this is failed (no worker ever took it).
QUEUED_TIMEOUT = timedelta(hours=24)


async def run_import_body(job_id: int) -> str | None:
    """A MemoryError never leaves this function: Celery would take it for the pool process running out
    of memory and stop the whole worker."""
    try:
        job = await run_import(job_id, maker=sessionmaker())
    except MemoryError:
        # Out of memory outside the body's own handling (while storing the outcome, say).
        log.warning("import_out_of_memory", job_id=job_id)
        await fail_job(sessionmaker(), job_id, OUT_OF_MEMORY)
        return "failed"
    return job.status if job is not None else None


@celery_app.task(name="imports.run", acks_late=True, reject_on_worker_lost=True)
def run_import_job(job_id: int) -> str | None:
    return run_async(run_import_body(job_id))


def _send(job_id: int) -> None:
    from crm.imports.service import enqueue_import

    enqueue_import(job_id)


async def _sent(
    maker: async_sessionmaker[AsyncSession], job_id: int, send: Callable[[int], None], now: datetime
) -> bool:
    """Hand the job to the broker and stamp when; False when the broker is away."""
    try:
        await asyncio.to_thread(send, job_id)
    except Exception as exc:
        log.warning("import_requeue_failed", job_id=job_id, error=repr(exc)[:300])
        return False
    async with session_scope(maker) as db:
        await db.execute(
            update(ImportJob)
            .where(ImportJob.id == job_id, ImportJob.status.in_(("queued", "running")))
            .values(heartbeat_at=now)
        )
    return True


async def requeue_stale_queued(
    maker: async_sessionmaker[AsyncSession] | None = None,
    *,
    older_than: timedelta = REQUEUE_AFTER,
    now: datetime | None = None,
    send: Callable[[int], None] = _send,
) -> list[int]:
    """Send again every job queued for longer than `older_than` since it was last sent; fail those
    queued for longer than `QUEUED_TIMEOUT`. Returns the ids sent."""
    maker = maker or sessionmaker()
    now = now or datetime.now(UTC)
    async with maker() as db:
        rows = await queued_since(db, now - older_than)
    sent: list[int] = []
    for job_id, created_at in rows:
        if created_at < now - QUEUED_TIMEOUT:
            if await fail_job(maker, job_id, "the import never started: no worker took it"):
                log.warning("import_never_started", job_id=job_id)
            continue
        if not await _sent(maker, job_id, send, now):
            break  # the broker is still away: the next pass tries again
        sent.append(job_id)
    if sent:
        log.info("imports_requeued", job_ids=sent)
    return sent


async def reap_stale_running(
    maker: async_sessionmaker[AsyncSession] | None = None,
    *,
    older_than: timedelta = STALE_AFTER,
    now: datetime | None = None,
    send: Callable[[int], None] = _send,
) -> list[int]:
    """Running jobs whose worker died entirely (no heartbeat, lock free): redelivered (they resume
    after their last committed chunk), or failed with a reason after `MAX_ATTEMPTS` deliveries.
    Returns the ids redelivered or failed."""
    maker = maker or sessionmaker()
    now = now or datetime.now(UTC)
    async with maker() as db:
        rows = await running_silent_since(db, now - older_than)
    handled: list[int] = []
    for job_id, attempts in rows:
        if not await lock_free(maker, job_id):
            continue  # its worker is alive, only slow to report
        if attempts >= MAX_ATTEMPTS:
            reason = f"the worker running this import stopped {attempts} times; the import was given up"
            if await fail_job(maker, job_id, reason):
                handled.append(job_id)
                log.warning("import_reaped", job_id=job_id, reason=reason)
            continue
        if not await _sent(maker, job_id, send, now):
            break
        handled.append(job_id)
        log.warning("import_redelivered", job_id=job_id, attempts=attempts)
    return handled


@celery_app.task(name="imports.requeue_queued", acks_late=True, soft_time_limit=50, time_limit=60)
def requeue_queued() -> list[int]:
    return run_async(requeue_stale_queued())


@celery_app.task(name="imports.reap_stale", acks_late=True, soft_time_limit=50, time_limit=60)
def reap_stale() -> list[int]:
    return run_async(reap_stale_running())
