from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Select, delete, func, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import ApiKey, Organization
from crm.organizations.repository import member_access_query

#: (key, creator's role there or None when the creator is no longer an active member, custom role permissions)
KeyWithCreator = tuple[ApiKey, str | None, list[str] | None]


async def find_live_key(session: AsyncSession, prefix: str) -> KeyWithCreator | None:
    """The key with this public prefix, if its organization still exists (any organization:
    this is how a request finds its tenant), with what its creator may do there now — one query."""
    creator = member_access_query(ApiKey.organization_id, ApiKey.created_by_id).lateral("creator")
    result = await session.execute(
        select(ApiKey, creator.c.role, creator.c.permissions)
        .join(Organization, Organization.id == ApiKey.organization_id)
        .outerjoin(creator, true())
        .where(ApiKey.prefix == prefix, Organization.deleted_at.is_(None))
    )
    row = result.one_or_none()
    return None if row is None else (row[0], row[1], row[2])


async def touch_key(session: AsyncSession, key_id: int) -> None:
    await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=func.now()))


class ApiKeyRepository:
    """An organization's keys; another organization's key is simply not found."""

    def __init__(self, session: AsyncSession, organization_id: int) -> None:
        self.session = session
        self.organization_id = organization_id

    def _scoped(self) -> Select[tuple[ApiKey]]:
        return select(ApiKey).where(ApiKey.organization_id == self.organization_id)

    def add(self, key: ApiKey) -> None:
        key.organization_id = self.organization_id
        self.session.add(key)

    async def get(self, key_id: int) -> ApiKey | None:
        result = await self.session.execute(self._scoped().where(ApiKey.id == key_id))
        return result.scalar_one_or_none()

    async def list(self, limit: int, offset: int) -> tuple[Sequence[ApiKey], int]:
        total = await self.session.scalar(select(func.count()).select_from(self._scoped().subquery()))
        rows = await self.session.execute(
            self._scoped().order_by(ApiKey.created_at.desc(), ApiKey.id.desc()).limit(limit).offset(offset)
        )
        return rows.scalars().all(), int(total or 0)

    async def reissue(
        self, key_id: int, prefix: str, key_hash: str, created_by_id: int | None
    ) -> ApiKey | None:
        """New secret and creator for a key of this organization (the old secret stops at once)."""
        result = await self.session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.organization_id == self.organization_id)
            .values(prefix=prefix, key_hash=key_hash, created_by_id=created_by_id, last_used_at=None)
            .returning(ApiKey)
            .execution_options(populate_existing=True)
        )
        return result.scalar_one_or_none()

    async def delete(self, key_id: int) -> bool:
        result = await self.session.execute(
            delete(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.organization_id == self.organization_id)
            .returning(ApiKey.id)
        )
        return result.scalar_one_or_none() is not None
