"""What runs when a sync job ends, for the integrations themselves: follow-up jobs for records that
inbound events named while the job ran. Registered into the sync engine's `SYNC_FINISHED_HOOKS` when
this module is imported (the worker imports it through `crm.worker.jobs_index`)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from crm.integrations.engine import SYNC_FINISHED_HOOKS, SyncFinishedHook
from crm.integrations.pending import waiting_entities
from crm.integrations.registry import UnknownProvider, provider_entities
from crm.models import Integration, SyncJob
from crm.sync.service import start_event_sync


async def follow_up_hook(session: AsyncSession, job: SyncJob) -> None:
    """After a job that succeeded, records that events named while it ran, of entities it did not
    read, get a targeted job of their own at once (the webhook could not start one: an integration
    has one active job at a time). Entities the finished job did read are not followed up: it read
    their waiting ids before its end, and a chain of jobs must end."""
    if job.status != "succeeded" or job.integration_id is None:
        return
    integration = await session.get(Integration, job.integration_id)
    if integration is None or not integration.enabled:
        return
    try:
        known = provider_entities(integration.provider)
    except UnknownProvider:
        return
    covered = set(job.entities or known)
    waiting = await waiting_entities(integration.id, [e for e in known if e not in covered])
    if not waiting:
        return
    await start_event_sync(session, integration, waiting)  # a job started meanwhile: its end looks again


def register(hooks: list[SyncFinishedHook] = SYNC_FINISHED_HOOKS) -> None:
    """Append `follow_up_hook` to the engine's `SYNC_FINISHED_HOOKS` (or to `hooks`), once."""
    if follow_up_hook not in hooks:
        hooks.append(follow_up_hook)


register()
