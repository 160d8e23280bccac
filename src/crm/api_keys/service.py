"""Organization API keys: `crm_<prefix>_<secret>`; only the SHA-256 of the whole key is stored."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm.api_keys.schemas import ApiKeyCreate
from crm.core.errors import Forbidden, NotFound, Unauthorized, UnprocessableEntity
from crm.core.security import sha256_hex
from crm.models import ApiKey

KEY_PREFIX = "crm_"


class InvalidApiKey(Unauthorized):
    code = "invalid_api_key"

    def __init__(self) -> None:
        super().__init__("Invalid, expired or revoked API key", headers={"WWW-Authenticate": "ApiKey"})


def _split(raw: str) -> tuple[str, str] | None:
    if not raw.startswith(KEY_PREFIX) or len(raw) > 200:
        return None
    prefix, sep, secret = raw[len(KEY_PREFIX) :].partition("_")
    if not sep or not prefix or not secret:
        return None
    return prefix, secret


async def authenticate_api_key(db: AsyncSession, raw: str) -> ApiKey:
    parts = _split(raw.strip())
    if parts is None:
        raise InvalidApiKey()
    result = await db.execute(select(ApiKey).where(ApiKey.prefix == parts[0]))
    key = result.scalar_one_or_none()
    if key is None or not hmac.compare_digest(key.key_hash, sha256_hex(raw.strip())):
        raise InvalidApiKey()
    if key.expires_at is not None and key.expires_at <= datetime.now(UTC):
        raise InvalidApiKey()
    await db.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=func.now()))
    return key


class ApiKeyService:
    def __init__(self, db: AsyncSession, organization_id: int) -> None:
        self.db = db
        self.organization_id = organization_id

    async def create(
        self, data: ApiKeyCreate, creator_id: int | None, creator_permissions: frozenset[str]
    ) -> tuple[ApiKey, str]:
        # A key may not carry more than its creator holds (users:read is a key-only scope).
        beyond = set(data.scopes) - creator_permissions - {"users:read"}
        if beyond:
            raise Forbidden(f"You cannot grant scopes you do not hold: {', '.join(sorted(beyond))}")
        if data.expires_at is not None and data.expires_at <= datetime.now(UTC):
            raise UnprocessableEntity("expires_at must be in the future")
        prefix = secrets.token_hex(6)
        raw = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        key = ApiKey(
            organization_id=self.organization_id,
            name=data.name,
            scopes=data.scopes,
            prefix=prefix,
            key_hash=sha256_hex(raw),
            created_by_id=creator_id,
            expires_at=data.expires_at,
        )
        self.db.add(key)
        await self.db.flush()
        return key, raw

    async def list(self, limit: int, offset: int) -> tuple[Sequence[ApiKey], int]:
        scoped = select(ApiKey).where(ApiKey.organization_id == self.organization_id)
        total = await self.db.scalar(select(func.count()).select_from(scoped.subquery()))
        rows = await self.db.execute(
            scoped.order_by(ApiKey.created_at.desc(), ApiKey.id.desc()).limit(limit).offset(offset)
        )
        return rows.scalars().all(), int(total or 0)

    async def delete(self, key_id: int) -> None:
        result = await self.db.execute(
            delete(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.organization_id == self.organization_id)
            .returning(ApiKey.id)
        )
        if result.scalar_one_or_none() is None:
            raise NotFound("API key not found")
