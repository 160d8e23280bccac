from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Membership, Organization, OrganizationRole, User


def member_access_query(organization_id: Any, user_id: Any) -> Select[tuple[str, list[str]]]:
    """(role, custom role permissions or NULL) of a member of a live organization whose user is active.
    Takes values or bound parameters (`crm.records.fast_read` embeds it)."""
    return (
        select(Membership.role, OrganizationRole.permissions)
        .join(Organization, Organization.id == Membership.organization_id)
        .join(User, User.id == Membership.user_id)
        .outerjoin(
            OrganizationRole,
            and_(
                OrganizationRole.organization_id == Membership.organization_id,
                OrganizationRole.name == Membership.role,
            ),
        )
        .where(
            Membership.organization_id == organization_id,
            Membership.user_id == user_id,
            Organization.deleted_at.is_(None),
            User.is_active.is_(True),
        )
    )


S = TypeVar("S", bound=Select[Any])


def _live_member(stmt: S, organization_id: int, user_id: int) -> S:
    """`stmt` (over `Membership`) narrowed to one member of a live (not deleted) organization."""
    return stmt.join(Organization, Organization.id == Membership.organization_id).where(
        Membership.organization_id == organization_id,
        Membership.user_id == user_id,
        Organization.deleted_at.is_(None),
    )


class OrganizationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _live(self) -> Select[tuple[Organization]]:
        return select(Organization).where(Organization.deleted_at.is_(None))

    async def get(self, organization_id: int, *, for_update: bool = False) -> Organization | None:
        """A live organization; `for_update` locks the row so concurrent writes queue up."""
        stmt = self._live().where(Organization.id == organization_id)
        if for_update:
            stmt = stmt.with_for_update()
        result = await self.session.execute(stmt)
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
        stmt = _live_member(select(Membership), organization_id, user_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def member(self, organization_id: int, user_id: int) -> tuple[Membership, User] | None:
        """One member of a live organization with their user row."""
        stmt = _live_member(select(Membership, User), organization_id, user_id)
        row = (await self.session.execute(stmt.join(User, User.id == Membership.user_id))).one_or_none()
        return None if row is None else (row[0], row[1])

    async def member_role(self, organization_id: int, user_id: int) -> str | None:
        """The caller's role in a live organization, checking the user is active (one query)."""
        stmt = _live_member(select(Membership.role), organization_id, user_id)
        stmt = stmt.join(User, User.id == Membership.user_id).where(User.is_active.is_(True))
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def member_access(self, organization_id: int, user_id: int) -> tuple[str, list[str] | None] | None:
        """The caller's role in a live organization (the user being active) and, when it is a custom
        role, that role's permissions — one query per request."""
        result = await self.session.execute(member_access_query(organization_id, user_id))
        row = result.one_or_none()
        return None if row is None else (row[0], row[1])

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

    async def user_by_email(self, email: str) -> User | None:
        """A registered user to add as a member (emails are stored in lower case)."""
        result = await self.session.execute(select(User).where(User.email == email.lower()))
        return result.scalar_one_or_none()

    async def lock_owners(self, organization_id: int) -> list[int]:
        """User ids of the owners, locked so two demotions cannot both pass the last-owner check."""
        result = await self.session.execute(
            select(Membership.user_id)
            .where(Membership.organization_id == organization_id, Membership.role == "owner")
            .order_by(Membership.user_id)
            .with_for_update()
        )
        return list(result.scalars().all())


class RoleRepository:
    """Custom roles of one organization; another organization's role is simply not found."""

    def __init__(self, session: AsyncSession, organization_id: int) -> None:
        self.session = session
        self.organization_id = organization_id

    def _scoped(self) -> Select[tuple[OrganizationRole]]:
        return select(OrganizationRole).where(OrganizationRole.organization_id == self.organization_id)

    def add(self, role: OrganizationRole) -> None:
        role.organization_id = self.organization_id
        self.session.add(role)

    async def get(self, role_id: int, *, for_update: bool = False) -> OrganizationRole | None:
        stmt = self._scoped().where(OrganizationRole.id == role_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def by_name(self, name: str, *, share_lock: bool = False) -> OrganizationRole | None:
        """`share_lock` keeps the role from being deleted or changed until this transaction ends
        (taken when a member is given the role)."""
        stmt = self._scoped().where(OrganizationRole.name == name)
        if share_lock:
            stmt = stmt.with_for_update(read=True)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def list(self, limit: int, offset: int) -> tuple[Sequence[OrganizationRole], int]:
        total = await self.session.scalar(select(func.count()).select_from(self._scoped().subquery()))
        rows = await self.session.execute(
            self._scoped()
            .order_by(OrganizationRole.created_at.desc(), OrganizationRole.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return rows.scalars().all(), int(total or 0)

    async def holders(self, name: str) -> int:
        """How many members hold the role `name`."""
        total = await self.session.scalar(
            select(func.count())
            .select_from(Membership)
            .where(Membership.organization_id == self.organization_id, Membership.role == name)
        )
        return int(total or 0)

    async def rename_holders(self, old: str, new: str) -> None:
        await self.session.execute(
            update(Membership)
            .where(Membership.organization_id == self.organization_id, Membership.role == old)
            .values(role=new)
        )

    async def delete(self, role: OrganizationRole) -> None:
        await self.session.delete(role)
