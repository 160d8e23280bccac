from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Membership, User


class PortalUserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def active(
        self, limit: int, offset: int, organization_id: int | None = None
    ) -> tuple[Sequence[User], int]:
        """Active users, oldest first; only the members of `organization_id` when given."""
        stmt: Select[tuple[User]] = select(User).where(User.is_active.is_(True))
        if organization_id is not None:
            members = select(Membership.user_id).where(Membership.organization_id == organization_id)
            stmt = stmt.where(User.id.in_(members))
        total = await self.session.scalar(select(func.count()).select_from(stmt.subquery()))
        rows = await self.session.execute(stmt.order_by(User.id).limit(limit).offset(offset))
        return rows.scalars().all(), int(total or 0)

    async def get(self, user_id: int) -> User | None:
        return await self.session.get(User, user_id)
