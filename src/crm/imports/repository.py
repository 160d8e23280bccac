from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.core.repository import TenantRepository
from crm.models import ImportJob


class ImportJobRepository(TenantRepository[ImportJob]):
    model = ImportJob

    async def list(self, limit: int, offset: int) -> tuple[Sequence[ImportJob], int]:
        return await self.page(self.base(), [ImportJob.created_at.desc(), ImportJob.id.desc()], limit, offset)


async def queued_since(db: AsyncSession, before: datetime, limit: int = 500) -> list[tuple[int, datetime]]:
    """Queued jobs (of every organization) last handed to the broker before `before`, oldest first,
    with their creation time."""
    rows = await db.execute(
        select(ImportJob.id, ImportJob.created_at)
        .where(
            ImportJob.status == "queued",
            func.coalesce(ImportJob.heartbeat_at, ImportJob.created_at) < before,
        )
        .order_by(ImportJob.id)
        .limit(limit)
    )
    return [(job_id, created_at) for job_id, created_at in rows.tuples()]


async def running_silent_since(db: AsyncSession, before: datetime, limit: int = 500) -> list[tuple[int, int]]:
    """Running jobs (of every organization) whose last sign of life is older than `before`, with
    their attempts."""
    rows = await db.execute(
        select(ImportJob.id, ImportJob.attempts)
        .where(
            ImportJob.status == "running",
            func.coalesce(ImportJob.heartbeat_at, ImportJob.started_at, ImportJob.created_at) < before,
        )
        .order_by(ImportJob.id)
        .limit(limit)
    )
    return [(job_id, attempts) for job_id, attempts in rows.tuples()]
