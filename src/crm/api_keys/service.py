"""Organization API keys: `crm_<prefix>_<secret>`; only the SHA-256 of the whole key is stored."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from crm.api_keys.exceptions import ApiKeyNotFound, InvalidApiKey, ScopesBeyondCaller
from crm.api_keys.repository import ApiKeyRepository, find_live_key, touch_key
from crm.api_keys.schemas import ApiKeyCreate
from crm.core.security import sha256_hex
from crm.models import ApiKey

if TYPE_CHECKING:
    from crm.organizations.dependencies import Tenant

KEY_PREFIX = "crm_"
#: Scopes only keys carry (no role holds them), so any key manager may grant them.
KEY_ONLY_SCOPES = frozenset({"users:read"})


def _split(raw: str) -> tuple[str, str] | None:
    if not raw.startswith(KEY_PREFIX) or len(raw) > 200:
        return None
    prefix, sep, secret = raw[len(KEY_PREFIX) :].partition("_")
    if not sep or not prefix or not secret:
        return None
    return prefix, secret


async def authenticate_api_key(db: AsyncSession, raw: str) -> ApiKey:
    """The key behind an `X-API-Key` value: 401 when unknown, wrong, expired, revoked or its
    organization deleted."""
    raw = raw.strip()
    parts = _split(raw)
    if parts is None:
        raise InvalidApiKey()
    key = await find_live_key(db, parts[0])
    if key is None or not hmac.compare_digest(key.key_hash, sha256_hex(raw)):
        raise InvalidApiKey()
    if key.expires_at is not None and key.expires_at <= datetime.now(UTC):
        raise InvalidApiKey()
    await touch_key(db, key.id)
    return key


class ApiKeyService:
    def __init__(self, db: AsyncSession, tenant: Tenant) -> None:
        self.db = db
        self.tenant = tenant
        self.repo = ApiKeyRepository(db, tenant.organization_id)

    async def create(self, data: ApiKeyCreate) -> tuple[ApiKey, str]:
        # A key may not carry more than its creator holds.
        beyond = set(data.scopes) - self.tenant.permissions - KEY_ONLY_SCOPES
        if beyond:
            raise ScopesBeyondCaller(sorted(beyond))
        prefix = secrets.token_hex(6)
        raw = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        key = ApiKey(
            name=data.name,
            scopes=data.scopes,
            prefix=prefix,
            key_hash=sha256_hex(raw),
            created_by_id=self.tenant.user_id,
            expires_at=data.expires_at,
        )
        self.repo.add(key)
        await self.db.flush()
        return key, raw

    async def list(self, limit: int, offset: int) -> tuple[Sequence[ApiKey], int]:
        return await self.repo.list(limit, offset)

    async def get(self, key_id: int) -> ApiKey:
        key = await self.repo.get(key_id)
        if key is None:
            raise ApiKeyNotFound()
        return key

    async def delete(self, key_id: int) -> None:
        if not await self.repo.delete(key_id):
            raise ApiKeyNotFound()
