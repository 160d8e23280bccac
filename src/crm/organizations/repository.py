from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Membership, Organization, User


class OrganizationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _live(self) -> Select[tuple[Organization]]:
        return select(Organization).where(Organization.deleted_at.is_(None))

    async def get(self, organization_id: int) -> Organization | None:
        result = await self.session.execute(self._live().where(Organization.id == organization_id))
        return result.scalar_one_or_none()

    async def get_by_slug_or_id(self, ref: str) -> Organization | None:
        stmt = self._live().where(Organization.slug == ref)
        if ref.isdigit() and len(ref) < 19:
            stmt = self._live().where((Organization.slug == ref) | (Organization.id == int(ref)))
        result = await self.session.execute(stmt.limit(1))
        return result.scalar_one_or_none()

    async def slug_exists(self, slug: str) -> bool:
        result = await self.session.execute(select(Organization.id).where(Organization.slug == slug))
        return result.first() is not None

    async def list_for_user(
        self, user_id: int, limit: int, offset: int
    ) -> tuple[Sequence[tuple[Organization, str]], int]:
        base = (
            select(Organization, Membership.role)
            .join(Membership, Membership.organization_id == Organization.id)
            .where(Membership.user_id == user_id, Organization.deleted_at.is_(None))
        )
        total = await self.session.scalar(select(func.count()).select_from(base.subquery()))
        rows = await self.session.execute(
            base.order_by(Organization.created_at.desc(), Organization.id.desc()).limit(limit).offset(offset)
        )
        return [(org, role) for org, role in rows.all()], int(total or 0)

    async def membership(self, organization_id: int, user_id: int) -> Membership | None:
        result = await self.session.execute(
            select(Membership)
            .join(Organization, Organization.id == Membership.organization_id)
            .where(
                Membership.organization_id == organization_id,
                Membership.user_id == user_id,
                Organization.deleted_at.is_(None),
            )
        )
        return result.scalar_one_or_none()

    async def member_role(self, organization_id: int, user_id: int) -> str | None:
        """The caller's role in a live organization, checking the user is active (one query)."""
        result = await self.session.execute(
            select(Membership.role)
            .join(Organization, Organization.id == Membership.organization_id)
            .join(User, User.id == Membership.user_id)
            .where(
                Membership.organization_id == organization_id,
                Membership.user_id == user_id,
                Organization.deleted_at.is_(None),
                User.is_active.is_(True),
            )
        )
        return result.scalar_one_or_none()

    async def members(
        self, organization_id: int, limit: int, offset: int
    ) -> tuple[Sequence[tuple[Membership, User]], int]:
        base = (
            select(Membership, User)
            .join(User, User.id == Membership.user_id)
            .where(Membership.organization_id == organization_id)
        )
        total = await self.session.scalar(
            select(func.count()).select_from(Membership).where(Membership.organization_id == organization_id)
        )
        rows = await self.session.execute(
            base.order_by(Membership.created_at.desc(), Membership.id.desc()).limit(limit).offset(offset)
        )
        return [(m, u) for m, u in rows.all()], int(total or 0)

    async def lock_owners(self, organization_id: int) -> list[int]:
        """User ids of the owners, locked so two demotions cannot both pass the last-owner check."""
        result = await self.session.execute(
            select(Membership.user_id)
            .where(Membership.organization_id == organization_id, Membership.role == "owner")
            .with_for_update()
        )
        return list(result.scalars().all())
