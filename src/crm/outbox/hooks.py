"""Summary events of bulk jobs: one `sync.succeeded` / `sync.failed` per sync job (with the counts
of each entity), written in the transaction that finishes the job. Registered into the sync engine's
`SYNC_FINISHED_HOOKS` when imported (the worker imports it through `crm.worker.jobs_index`)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from crm.integrations.engine import SYNC_FINISHED_HOOKS, SyncFinishedHook
from crm.models import SyncJob
from crm.outbox.service import emit


async def sync_finished_event(session: AsyncSession, job: SyncJob) -> None:
    if job.status not in ("succeeded", "failed"):
        return
    emit(
        session,
        job.organization_id,
        f"sync.{job.status}",
        entity_type="sync",
        entity_id=job.id,
        actor_id=job.created_by_id,
        data={
            "id": job.id,
            "integration_id": job.integration_id,
            "status": job.status,
            "counts": job.counts,
            "error": job.error,
        },
    )


def register(hooks: list[SyncFinishedHook] = SYNC_FINISHED_HOOKS) -> None:
    if sync_finished_event not in hooks:
        hooks.append(sync_finished_event)


register()
