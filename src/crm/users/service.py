"""Who may list users for the corporate portal, and which ones they see."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from crm.api_keys.service import authenticate_api_key
from crm.core.errors import Forbidden, Unauthorized
from crm.core.security import TokenClaims
from crm.models import User
from crm.users.repository import PortalUserRepository

USERS_READ = "users:read"


class PortalUserService:
    def __init__(self, db: AsyncSession) -> None:
        self.db = db
        self.repo = PortalUserRepository(db)

    async def for_api_key(self, raw_key: str, limit: int, offset: int) -> tuple[Sequence[User], int]:
        """The active members of the key's organization; the key needs `users:read`."""
        access = await authenticate_api_key(self.db, raw_key)
        key = access.key
        if USERS_READ not in access.scopes:
            raise Forbidden(f"This API key lacks the {USERS_READ!r} scope")
        return await self.repo.active(limit, offset, organization_id=key.organization_id)

    async def for_bearer(self, claims: TokenClaims, limit: int, offset: int) -> tuple[Sequence[User], int]:
        """Every active user, for a superuser; anyone else is refused (403)."""
        user = await self.repo.get(claims.user_id)
        if user is None or not user.is_active:
            raise Unauthorized("User is inactive")
        if not user.is_superuser:
            raise Forbidden(f"Only a superuser or an API key with {USERS_READ!r} may list users")
        return await self.repo.active(limit, offset)
