"""User administration for superusers: list every account, activate, deactivate, grant superuser."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from crm.admin.exceptions import CannotChangeSelf, UserNotFound
from crm.admin.repository import UserAdminRepository
from crm.admin.schemas import AdminUserUpdate
from crm.auth.service import AuthService
from crm.config import get_settings
from crm.core.redis import SafeRedis
from crm.models import User


class UserAdminService:
    def __init__(self, db: AsyncSession, redis: SafeRedis, actor: User) -> None:
        self.db = db
        self.redis = redis
        self.actor = actor
        self.repo = UserAdminRepository(db)

    async def list(
        self, q: str | None, is_active: bool | None, limit: int, offset: int
    ) -> tuple[Sequence[User], int]:
        return await self.repo.list(q, is_active, limit, offset)

    async def update(self, user_id: int, data: AdminUserUpdate) -> User:
        user = await self.repo.get(user_id, for_update=True)
        if user is None:
            raise UserNotFound()
        if user.id == self.actor.id and (data.is_active is False or data.is_superuser is False):
            raise CannotChangeSelf()
        if data.is_superuser is not None:
            user.is_superuser = data.is_superuser
        if data.is_active is not None and data.is_active != user.is_active:
            user.is_active = data.is_active
            if not data.is_active:
                # Every session ends now: access tokens fail on their next request, refreshes too.
                auth = AuthService(self.db, self.redis, get_settings())
                await auth.revoke_sessions(user.id, "deactivated")
        await self.db.flush()
        return user
