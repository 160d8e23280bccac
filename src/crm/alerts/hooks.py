"""Alerts raised when a sync job finishes: low stock (the sync may have moved stock or minimums) and
sync failures. Registered into the sync engine's `SYNC_FINISHED_HOOKS` when this module is imported
(the worker imports it through `crm.worker.jobs_index`)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from crm.alerts.service import evaluate_low_stock, raise_sync_failed_alert, resolve_sync_failed_alert
from crm.integrations.engine import SYNC_FINISHED_HOOKS, SyncFinishedHook
from crm.models import SyncJob


async def low_stock_hook(session: AsyncSession, job: SyncJob) -> None:
    """Re-evaluate low-stock alerts of the job's organization, whatever the job's outcome (a failed
    or cancelled job may still have committed stock pages)."""
    await evaluate_low_stock(session, job.organization_id)


async def sync_failed_hook(session: AsyncSession, job: SyncJob) -> None:
    """A failed job raises (or refreshes) its integration's alert; a successful one resolves it."""
    if job.status == "failed":
        await raise_sync_failed_alert(session, job)
    elif job.status == "succeeded":
        await resolve_sync_failed_alert(session, job)


HOOKS: tuple[SyncFinishedHook, ...] = (low_stock_hook, sync_failed_hook)


def register(hooks: list[SyncFinishedHook] = SYNC_FINISHED_HOOKS) -> None:
    """Append the alert hooks to the engine's `SYNC_FINISHED_HOOKS` (or to `hooks`), once."""
    for hook in HOOKS:
        if hook not in hooks:
            hooks.append(hook)


register()
