"""Organizations, membership and the invariants around roles."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from slugify import slugify
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm.auth.repository import UserRepository
from crm.core.concurrency import check_version
from crm.models import Membership, Organization, User
from crm.organizations.exceptions import (
    LastOwner,
    MemberExists,
    MemberNotFound,
    OrganizationNotFound,
    OrganizationSlugTaken,
    OwnerRequired,
    UserNotFound,
)
from crm.organizations.permissions import Role
from crm.organizations.repository import OrganizationRepository
from crm.organizations.schemas import MemberAdd, MemberUpdate, OrganizationCreate, OrganizationUpdate


class OrganizationService:
    def __init__(self, db: AsyncSession) -> None:
        self.db = db
        self.repo = OrganizationRepository(db)

    async def _free_slug(self, name: str) -> str:
        base = slugify(name, max_length=90) or "org"
        candidate, n = base, 1
        while await self.repo.slug_exists(candidate):
            n += 1
            candidate = f"{base}-{n}"
        return candidate

    async def create(self, data: OrganizationCreate, owner: User) -> Organization:
        for _attempt in range(3):
            slug = data.slug or await self._free_slug(data.name)
            org = Organization(name=data.name, slug=slug, currency=data.currency)
            try:
                async with self.db.begin_nested():
                    self.db.add(org)
                    await self.db.flush()
                    self.db.add(Membership(organization_id=org.id, user_id=owner.id, role=Role.OWNER))
                    await self.db.flush()
            except IntegrityError:
                if data.slug:
                    raise OrganizationSlugTaken() from None
                continue  # a generated slug raced with another create; pick the next one
            return org
        raise OrganizationSlugTaken()

    async def list_mine(
        self, user: User, limit: int, offset: int
    ) -> tuple[Sequence[tuple[Organization, str]], int]:
        return await self.repo.list_for_user(user.id, limit, offset)

    async def get(self, organization_id: int) -> Organization:
        org = await self.repo.get(organization_id)
        if org is None:
            raise OrganizationNotFound()
        return org

    async def update(
        self, organization_id: int, data: OrganizationUpdate, if_match: str | None
    ) -> Organization:
        org = await self.get(organization_id)
        check_version(org.version, if_match)
        org.name = data.name
        if data.slug is not None:
            org.slug = data.slug
        if data.currency is not None:
            org.currency = data.currency
        org.version += 1
        try:
            async with self.db.begin_nested():
                await self.db.flush()
        except IntegrityError:
            raise OrganizationSlugTaken() from None
        return org

    async def delete(self, organization_id: int) -> None:
        org = await self.get(organization_id)
        org.deleted_at = datetime.now(UTC)
        # Free the slug for reuse; the row is kept for audit.
        org.slug = f"{org.slug[:70]}-deleted-{org.id}"
        await self.db.flush()

    # Members -------------------------------------------------------------------------------

    async def members(
        self, organization_id: int, limit: int, offset: int
    ) -> tuple[Sequence[tuple[Membership, User]], int]:
        return await self.repo.members(organization_id, limit, offset)

    async def add_member(
        self, organization_id: int, data: MemberAdd, actor_role: str
    ) -> tuple[Membership, User]:
        if data.role == Role.OWNER and actor_role != Role.OWNER:
            raise OwnerRequired("Only an owner may grant the owner role")
        user = await UserRepository(self.db).get_by_email(data.email)
        if user is None:
            raise UserNotFound()
        membership = Membership(organization_id=organization_id, user_id=user.id, role=data.role)
        try:
            async with self.db.begin_nested():
                self.db.add(membership)
                await self.db.flush()
        except IntegrityError:
            raise MemberExists() from None
        return membership, user

    async def _target(self, organization_id: int, user_id: int) -> Membership:
        membership = await self.repo.membership(organization_id, user_id)
        if membership is None:
            raise MemberNotFound()
        return membership

    async def change_role(
        self, organization_id: int, user_id: int, data: MemberUpdate, actor_role: str
    ) -> tuple[Membership, User]:
        target = await self._target(organization_id, user_id)
        touches_owner = target.role == Role.OWNER or data.role == Role.OWNER
        if touches_owner and actor_role != Role.OWNER:
            raise OwnerRequired()
        if target.role == Role.OWNER and data.role != Role.OWNER:
            owners = await self.repo.lock_owners(organization_id)
            if owners == [user_id]:
                raise LastOwner()
        target.role = data.role
        await self.db.flush()
        user = await UserRepository(self.db).get(user_id)
        assert user is not None
        return target, user

    async def remove_member(self, organization_id: int, user_id: int, actor_role: str) -> None:
        target = await self._target(organization_id, user_id)
        if target.role == Role.OWNER:
            if actor_role != Role.OWNER:
                raise OwnerRequired()
            owners = await self.repo.lock_owners(organization_id)
            if owners == [user_id]:
                raise LastOwner()
        await self.db.delete(target)
        await self.db.flush()
