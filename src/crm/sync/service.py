"""Starting, listing and cancelling sync jobs. One active job per integration is enforced by the
partial unique index `uq_sync_job_active_integration`: a start inserts and catches the violation,
so two concurrent starts cannot both succeed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import structlog
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from crm.core.db import on_commit
from crm.core.errors import AppError, NotFound, UnprocessableEntity
from crm.integrations.registry import UnknownProvider, provider_entities
from crm.models import Integration, SyncJob

log = structlog.get_logger(__name__)

ACTIVE = ("queued", "running")
TERMINAL = ("succeeded", "failed", "cancelled")
ACTIVE_INDEX = "uq_sync_job_active_integration"


class JobAlreadyRunning(AppError):
    status, code = 409, "job_already_running"


def enqueue_job(job_id: int) -> None:
    """Hand the job to a worker (sync: called from a thread after commit)."""
    from crm.integrations.jobs import run_job

    run_job.apply_async(args=[job_id])


async def mark_enqueued(bind: AsyncEngine | AsyncConnection, job_ids: Sequence[int]) -> None:
    """Record that the broker accepted the jobs' messages (`enqueued_at`); best effort."""
    try:
        async with AsyncSession(bind) as session, session.begin():
            await session.execute(
                update(SyncJob)
                .where(SyncJob.id.in_(job_ids), SyncJob.status == "queued")
                .values(enqueued_at=func.clock_timestamp())
            )
    except Exception:  # the job is merely sent once more later: a duplicate message does nothing
        log.warning("sync_enqueued_mark_failed", job_ids=list(job_ids), exc_info=True)


async def _enqueue_after_commit(job_id: int, bind: AsyncEngine | AsyncConnection | None) -> None:
    try:
        await asyncio.to_thread(enqueue_job, job_id)
    except Exception as exc:
        # The broker is away: the job stays `queued` with no `enqueued_at`, and `sync.requeue_queued`
        # sends it once the broker is back.
        log.warning("sync_enqueue_failed", job_id=job_id, error=f"{type(exc).__name__}: {exc}"[:300])
        return
    if bind is not None:
        await mark_enqueued(bind, [job_id])


async def get_integration(session: AsyncSession, organization_id: int, integration_id: int) -> Integration:
    integration = await session.scalar(
        select(Integration).where(
            Integration.id == integration_id, Integration.organization_id == organization_id
        )
    )
    if integration is None:
        raise NotFound("Integration not found")
    return integration


def validate_entities(provider: str, entities: Sequence[str] | None) -> list[str]:
    """The requested entities in the provider's sync order; unknown ones → 422."""
    try:
        known = provider_entities(provider)
    except UnknownProvider:
        raise UnprocessableEntity(
            f"Provider {provider!r} is not installed",
            errors=[
                {"loc": ["body", "integration_id"], "msg": "provider not installed", "type": "value_error"}
            ],
        ) from None
    if not entities:
        return []
    unknown = [e for e in entities if e not in known]
    if unknown:
        raise UnprocessableEntity(
            f"Unknown entities for {provider}: {', '.join(unknown)}",
            errors=[
                {
                    "loc": ["body", "entities"],
                    "msg": f"unknown entity {e!r}; known: {', '.join(known)}",
                    "type": "value_error",
                }
                for e in unknown
            ],
        )
    wanted = set(entities)
    return [e for e in known if e in wanted]


async def active_job_id(session: AsyncSession, integration_id: int) -> int | None:
    job_id: int | None = await session.scalar(
        select(SyncJob.id).where(SyncJob.integration_id == integration_id, SyncJob.status.in_(ACTIVE))
    )
    return job_id


async def start_sync(
    session: AsyncSession,
    *,
    organization_id: int,
    integration_id: int,
    entities: Sequence[str] | None = None,
    full: bool = False,
    trigger: str = "manual",
    user_id: int | None = None,
    enqueue: bool = True,
) -> SyncJob:
    """Create a queued job and send it to a worker after commit.

    Raises 404 for an integration of another organization, 422 for entities the provider does not
    know, and 409 `job_already_running` (with `job_id`) while the integration has an active job.
    """
    integration = await get_integration(session, organization_id, integration_id)
    ordered = validate_entities(integration.provider, entities)
    values = {
        "organization_id": organization_id,
        "integration_id": integration.id,
        "status": "queued",
        "trigger": trigger,
        "entities": ordered,
        "full": full,
        "created_by_id": user_id,
    }
    for _ in range(3):
        try:
            async with session.begin_nested():
                job_id = await session.scalar(insert(SyncJob).values(**values).returning(SyncJob.id))
        except IntegrityError as exc:
            if ACTIVE_INDEX not in str(exc.orig):
                raise
            running = await active_job_id(session, integration.id)
            if running is None:  # it finished in between: try again
                continue
            raise JobAlreadyRunning(
                f"Integration {integration.id} already has an active sync job {running}", job_id=running
            ) from None
        else:
            break
    else:  # pragma: no cover - three finished jobs in a row between insert and lookup
        raise JobAlreadyRunning("Integration has an active sync job")
    job = await session.get(SyncJob, job_id)
    assert job is not None
    if enqueue:
        bind = session.bind
        on_commit(
            session,
            _enqueue_after_commit,
            job.id,
            bind if isinstance(bind, AsyncEngine | AsyncConnection) else None,
        )
    return job


async def start_event_sync(
    session: AsyncSession, integration: Integration, entities: Sequence[str]
) -> SyncJob | int | None:
    """An incremental job reading what provider events named (`trigger: webhook`); while the
    integration has a job already, that job's id (None when it is not known): the named records wait
    for it, or for the job its end starts (`crm.integrations.hooks`)."""
    try:
        return await start_sync(
            session,
            organization_id=integration.organization_id,
            integration_id=integration.id,
            entities=entities,
            full=False,
            trigger="webhook",
        )
    except JobAlreadyRunning as exc:
        running = exc.extra.get("job_id")
        return int(running) if running is not None else None


async def get_job(session: AsyncSession, organization_id: int, job_id: int) -> SyncJob:
    job = await session.scalar(
        select(SyncJob).where(SyncJob.id == job_id, SyncJob.organization_id == organization_id)
    )
    if job is None:
        raise NotFound("Sync job not found")
    return job


async def list_jobs(
    session: AsyncSession,
    organization_id: int,
    *,
    integration_id: int | None,
    status: str | None,
    limit: int,
    offset: int,
) -> tuple[Sequence[SyncJob], int]:
    conditions = [SyncJob.organization_id == organization_id]
    if integration_id is not None:
        conditions.append(SyncJob.integration_id == integration_id)
    if status is not None:
        conditions.append(SyncJob.status == status)
    total = await session.scalar(select(func.count()).select_from(SyncJob).where(*conditions)) or 0
    rows = await session.scalars(
        select(SyncJob)
        .where(*conditions)
        .order_by(SyncJob.created_at.desc(), SyncJob.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return rows.all(), total


async def cancel_job(session: AsyncSession, organization_id: int, job_id: int) -> SyncJob:
    """Cooperative cancel: a queued job is cancelled at once, a running one at its next page."""
    job = await get_job(session, organization_id, job_id)
    now = datetime.now(UTC)
    await session.execute(
        update(SyncJob)
        .where(SyncJob.id == job.id, SyncJob.status == "queued")
        .values(status="cancelled", cancel_requested=True, finished_at=now, error="cancelled by user")
    )
    await session.execute(
        update(SyncJob).where(SyncJob.id == job.id, SyncJob.status == "running").values(cancel_requested=True)
    )
    await session.refresh(job)
    return job
