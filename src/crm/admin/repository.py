from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Integration, SyncJob, User

ACTIVE_JOB_STATES = ("queued", "running")


class IntegrationRepository:
    """An organization's integrations; another organization's integration is simply not found."""

    def __init__(self, session: AsyncSession, organization_id: int) -> None:
        self.session = session
        self.organization_id = organization_id

    def _scoped(self) -> Select[tuple[Integration]]:
        return select(Integration).where(Integration.organization_id == self.organization_id)

    def add(self, integration: Integration) -> None:
        integration.organization_id = self.organization_id
        self.session.add(integration)

    async def get(self, integration_id: int, *, for_update: bool = False) -> Integration | None:
        stmt = self._scoped().where(Integration.id == integration_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def list(self, limit: int, offset: int) -> tuple[Sequence[Integration], int]:
        total = await self.session.scalar(select(func.count()).select_from(self._scoped().subquery()))
        rows = await self.session.execute(
            self._scoped()
            .order_by(Integration.created_at.desc(), Integration.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return rows.scalars().all(), int(total or 0)

    async def all(self) -> Sequence[Integration]:
        rows = await self.session.execute(self._scoped().order_by(Integration.id))
        return rows.scalars().all()

    async def active_jobs(self, integration_ids: Sequence[int]) -> dict[int, int]:
        """Integration id → its queued or running job."""
        if not integration_ids:
            return {}
        rows = await self.session.execute(
            select(SyncJob.integration_id, SyncJob.id).where(
                SyncJob.organization_id == self.organization_id,
                SyncJob.integration_id.in_(integration_ids),
                SyncJob.status.in_(ACTIVE_JOB_STATES),
            )
        )
        return dict(rows.tuples().all())

    async def delete(self, integration: Integration) -> None:
        await self.session.delete(integration)


async def find_integration(session: AsyncSession, integration_id: int) -> Integration | None:
    """Any organization's integration (inbound webhooks find their tenant this way)."""
    return await session.get(Integration, integration_id)


class UserAdminRepository:
    """Every user account (superuser administration; no tenant)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def list(
        self, q: str | None, is_active: bool | None, limit: int, offset: int
    ) -> tuple[Sequence[User], int]:
        stmt = select(User)
        if q:
            pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            stmt = stmt.where(or_(User.email.ilike(pattern), User.full_name.ilike(pattern)))
        if is_active is not None:
            stmt = stmt.where(User.is_active.is_(is_active))
        total = await self.session.scalar(select(func.count()).select_from(stmt.subquery()))
        rows = await self.session.execute(
            stmt.order_by(User.created_at.desc(), User.id.desc()).limit(limit).offset(offset)
        )
        return rows.scalars().all(), int(total or 0)

    async def get(self, user_id: int, *, for_update: bool = False) -> User | None:
        stmt = select(User).where(User.id == user_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()
