"""Organizations, membership and the invariants around roles."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from slugify import slugify
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm.core.cache import invalidate_after_commit
from crm.core.concurrency import check_version
from crm.core.errors import Forbidden
from crm.core.redis import SafeRedis
from crm.models import Membership, Organization, OrganizationRole, User
from crm.organizations.access import access_changed_after_commit
from crm.organizations.exceptions import (
    LastOwner,
    MemberExists,
    MemberNotFound,
    OrganizationNotFound,
    OrganizationSlugTaken,
    OwnerRequired,
    RoleInUse,
    RoleNameTaken,
    RoleNotFound,
    RoleTooWide,
    UnknownRole,
    UserNotFound,
)
from crm.organizations.permissions import BUILT_IN_ROLES, Role, permissions_for, role_permissions
from crm.organizations.repository import OrganizationRepository, RoleRepository
from crm.organizations.schemas import (
    MemberAdd,
    MemberUpdate,
    OrganizationCreate,
    OrganizationUpdate,
    RoleCreate,
    RoleReplace,
)
from crm.pipelines.service import ensure_default_pipeline

if TYPE_CHECKING:
    from crm.organizations.dependencies import Tenant


class OrganizationService:
    def __init__(self, db: AsyncSession, redis: SafeRedis | None = None) -> None:
        self.db = db
        self.redis = redis
        self.repo = OrganizationRepository(db)

    def _access_changed(self, organization_id: int) -> None:
        access_changed_after_commit(self.db, self.redis, organization_id)

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
            await ensure_default_pipeline(self.db, org.id)
            return org
        raise OrganizationSlugTaken()

    async def list_mine(
        self, user: User, limit: int, offset: int
    ) -> tuple[Sequence[tuple[Organization, str]], int]:
        return await self.repo.list_for_user(user.id, limit, offset)

    async def get(self, organization_id: int, *, for_update: bool = False) -> Organization:
        org = await self.repo.get(organization_id, for_update=for_update)
        if org is None:
            raise OrganizationNotFound()
        return org

    async def find(self, ref: str) -> Organization | None:
        """A live organization named in settings (`REGISTRATION_ORGANIZATION`, `ADMIN_ORGANIZATION`):
        by slug or id, else by the slug its name would get."""
        return await self.repo.get_by_slug_or_id(ref) or await self.repo.get_by_slug_or_id(
            slugify(ref, max_length=90)
        )

    async def update(self, tenant: Tenant, data: OrganizationUpdate, if_match: str | None) -> Organization:
        # Lock the row: two writers holding the same ETag must not both pass the version check.
        org = await self.get(tenant.organization_id, for_update=True)
        check_version(org.version, if_match)
        org.name = data.name
        if data.slug is not None:
            org.slug = data.slug
        if data.currency is not None and data.currency != org.currency:
            org.currency = data.currency
            # Analytics sum amounts in the organization's currency.
            if self.redis is not None:
                invalidate_after_commit(self.db, self.redis, org.id)
        org.version += 1
        try:
            async with self.db.begin_nested():
                await self.db.flush()
        except IntegrityError:
            raise OrganizationSlugTaken() from None
        return org

    async def delete(self, tenant: Tenant) -> None:
        org = await self.get(tenant.organization_id, for_update=True)
        org.deleted_at = datetime.now(UTC)
        # Free the slug for reuse; the row is kept for audit.
        org.slug = f"{org.slug[:70]}-deleted-{org.id}"
        await self.db.flush()
        self._access_changed(org.id)

    # Members -------------------------------------------------------------------------------

    async def members(
        self, tenant: Tenant, limit: int, offset: int
    ) -> tuple[Sequence[tuple[Membership, User]], int]:
        return await self.repo.members(tenant.organization_id, limit, offset)

    async def _permissions_of(self, tenant: Tenant, role: str, *, given: bool) -> frozenset[str]:
        """What `role` grants in the tenant's organization. A role being `given` must exist (else
        422) and is share-locked so it cannot be deleted or changed before this transaction ends."""
        if role in BUILT_IN_ROLES:
            return permissions_for(role)
        custom = await RoleRepository(self.db, tenant.organization_id).by_name(role, share_lock=given)
        if custom is None:
            if given:
                raise UnknownRole(role)
            return frozenset()
        return role_permissions(role, custom.permissions)

    async def _check_may_grant(self, tenant: Tenant, role: str, *, given: bool = True) -> None:
        """Nobody hands out (or takes away) more than they hold: owners need `owners:manage`, any
        other role must be covered by the caller's own permissions (so an admin may grant admin,
        not owner)."""
        if role == Role.OWNER:
            if not tenant.can("owners:manage"):
                raise OwnerRequired()
        elif not await self._permissions_of(tenant, role, given=given) <= tenant.permissions:
            raise RoleTooWide()

    async def add_member(self, tenant: Tenant, data: MemberAdd) -> tuple[Membership, User]:
        await self._check_may_grant(tenant, data.role)
        user = await self.repo.user_by_email(data.email)
        if user is None:
            raise UserNotFound()
        membership = Membership(organization_id=tenant.organization_id, user_id=user.id, role=data.role)
        try:
            async with self.db.begin_nested():
                self.db.add(membership)
                await self.db.flush()
        except IntegrityError:
            raise MemberExists() from None
        return membership, user

    async def _target(self, tenant: Tenant, user_id: int) -> tuple[Membership, User]:
        row = await self.repo.member(tenant.organization_id, user_id)
        if row is None:
            raise MemberNotFound()
        return row

    async def _keep_an_owner(self, tenant: Tenant, user_id: int) -> None:
        owners = await self.repo.lock_owners(tenant.organization_id)
        if owners == [user_id]:
            raise LastOwner()

    async def change_role(self, tenant: Tenant, user_id: int, data: MemberUpdate) -> tuple[Membership, User]:
        target, user = await self._target(tenant, user_id)
        await self._check_may_grant(tenant, target.role, given=False)  # the role taken away
        await self._check_may_grant(tenant, data.role)  # the role given
        if target.role == data.role:
            return target, user
        if target.role == Role.OWNER:
            await self._keep_an_owner(tenant, user_id)
        target.role = data.role
        await self.db.flush()
        self._access_changed(tenant.organization_id)
        return target, user

    async def remove_member(self, tenant: Tenant, user_id: int) -> None:
        """Remove a member (`members:manage`), or leave: anyone may remove themselves."""
        target, _user = await self._target(tenant, user_id)
        leaving = tenant.user_id is not None and tenant.user_id == user_id
        if not leaving:
            if not tenant.can("members:manage"):
                raise Forbidden("This needs the 'members:manage' permission")
            await self._check_may_grant(tenant, target.role, given=False)
        if target.role == Role.OWNER:
            await self._keep_an_owner(tenant, user_id)
        await self.db.delete(target)
        await self.db.flush()
        self._access_changed(tenant.organization_id)


class RoleService:
    """Custom roles of the tenant's organization (§5): a name and a permission list on top of the
    built-in four. Nobody defines or edits a role granting more than they hold themselves."""

    def __init__(self, db: AsyncSession, tenant: Tenant, redis: SafeRedis | None = None) -> None:
        self.db = db
        self.tenant = tenant
        self.redis = redis
        self.repo = RoleRepository(db, tenant.organization_id)

    def _within_caller(self, permissions: list[str]) -> None:
        beyond = sorted(set(permissions) - self.tenant.permissions)
        if beyond:
            raise Forbidden(
                f"You cannot grant permissions you do not hold: {', '.join(beyond)}", permissions=beyond
            )

    async def list(self, limit: int, offset: int) -> tuple[Sequence[OrganizationRole], int]:
        return await self.repo.list(limit, offset)

    async def get(self, role_id: int, *, for_update: bool = False) -> OrganizationRole:
        role = await self.repo.get(role_id, for_update=for_update)
        if role is None:
            raise RoleNotFound()
        return role

    async def _flush_unique(self) -> None:
        try:
            async with self.db.begin_nested():
                await self.db.flush()
        except IntegrityError:
            raise RoleNameTaken() from None

    async def create(self, data: RoleCreate) -> OrganizationRole:
        self._within_caller(data.permissions)
        role = OrganizationRole(name=data.name, permissions=data.permissions)
        self.repo.add(role)
        await self._flush_unique()
        return role

    async def replace(self, role_id: int, data: RoleReplace, if_match: str | None) -> OrganizationRole:
        # Locked: holders being given the role share-lock it, and two editors queue up.
        role = await self.get(role_id, for_update=True)
        check_version(role.version, if_match)
        self._within_caller(role.permissions)  # the role as it is
        self._within_caller(data.permissions)  # and as it would be
        old_name = role.name
        role.name = data.name
        role.permissions = data.permissions
        role.version += 1
        await self._flush_unique()
        if data.name != old_name:
            await self.repo.rename_holders(old_name, data.name)
        # Holders of the role get its new permissions on their next request.
        access_changed_after_commit(self.db, self.redis, self.tenant.organization_id)
        return role

    async def delete(self, role_id: int) -> None:
        role = await self.get(role_id, for_update=True)
        self._within_caller(role.permissions)
        holders = await self.repo.holders(role.name)
        if holders:
            raise RoleInUse(holders)
        await self.repo.delete(role)
        await self.db.flush()
        access_changed_after_commit(self.db, self.redis, self.tenant.organization_id)
