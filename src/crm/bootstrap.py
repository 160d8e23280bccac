"""Idempotent creation of the first superuser and their organization."""

from __future__ import annotations

from slugify import slugify
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.auth.repository import UserRepository
from crm.auth.service import AuthService
from crm.config import Settings
from crm.core.db import session_scope
from crm.core.redis import SafeRedis
from crm.core.security import hash_password
from crm.models import Membership, User
from crm.organizations.repository import OrganizationRepository
from crm.organizations.schemas import OrganizationCreate
from crm.organizations.service import OrganizationService


async def create_admin(
    maker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    email: str,
    password: str,
    name: str,
    organization: str | None,
) -> tuple[User, int | None]:
    """Create or update the superuser `email`; make them owner of `organization` (name or slug)."""
    redis = SafeRedis.from_url(settings.redis_url, settings.redis_timeout)
    try:
        async with session_scope(maker) as db:
            users = UserRepository(db)
            user = await users.get_by_email(email)
            if user is None:
                user = await AuthService(db, redis, settings).create_user(
                    email, password, name, is_superuser=True
                )
                await db.flush()
            else:
                user.is_superuser = True
                user.is_active = True
                user.password_hash = hash_password(password)
            org_id: int | None = None
            if organization:
                repo = OrganizationRepository(db)
                org = await repo.get_by_slug_or_id(organization) or await repo.get_by_slug_or_id(
                    slugify(organization, max_length=90)
                )
                if org is None:
                    orgs = OrganizationService(db)
                    org = await orgs.create(OrganizationCreate(name=organization), user)
                elif await repo.membership(org.id, user.id) is None:
                    db.add(Membership(organization_id=org.id, user_id=user.id, role="owner"))
                org_id = org.id
            return user, org_id
    finally:
        await redis.close()


async def ensure_admin(maker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    if not settings.admin_email or not settings.admin_password:
        return
    await create_admin(
        maker,
        settings,
        email=settings.admin_email,
        password=settings.admin_password,
        name=settings.admin_name,
        organization=settings.admin_organization,
    )
