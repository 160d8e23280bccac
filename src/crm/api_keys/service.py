"""Organization API keys: `crm_<prefix>_<secret>`; only the SHA-256 of the whole key is stored.

A key acts for the member who created (or last re-issued) it: on every use its scopes are cut down to
what that member may still do in the organization. When the creator is no longer an active member, the
key stops working (401 `api_key_revoked`) until an admin re-issues it. See docs/platform.md.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from crm.api_keys.exceptions import ApiKeyNotFound, ApiKeyRevoked, InvalidApiKey, ScopesBeyondCaller
from crm.api_keys.repository import ApiKeyRepository, find_live_key, touch_key
from crm.api_keys.schemas import ApiKeyCreate
from crm.core.security import sha256_hex
from crm.models import ApiKey
from crm.organizations.permissions import role_permissions

if TYPE_CHECKING:
    from crm.organizations.dependencies import Tenant

KEY_PREFIX = "crm_"
#: Scopes only keys carry (no role holds them), so any key manager may grant them. At use time each
#: counts as held while the creator holds the role permission that reveals the same data.
KEY_ONLY_SCOPES = frozenset({"users:read"})
KEY_ONLY_EQUIVALENT = {"users:read": "members:read"}


@dataclass(frozen=True, slots=True)
class KeyAccess:
    """A verified key and the scopes it may use now: its own, within what its creator still holds."""

    key: ApiKey
    scopes: frozenset[str]


def effective_scopes(key_scopes: Sequence[str], creator_permissions: frozenset[str]) -> frozenset[str]:
    held = set(creator_permissions)
    held.update(k for k, needs in KEY_ONLY_EQUIVALENT.items() if needs in creator_permissions)
    return frozenset(key_scopes) & held


def _split(raw: str) -> tuple[str, str] | None:
    if not raw.startswith(KEY_PREFIX) or len(raw) > 200:
        return None
    prefix, sep, secret = raw[len(KEY_PREFIX) :].partition("_")
    if not sep or not prefix or not secret:
        return None
    return prefix, secret


def _new_secret() -> tuple[str, str]:
    prefix = secrets.token_hex(6)
    return prefix, f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"


async def authenticate_api_key(db: AsyncSession, raw: str) -> KeyAccess:
    """The key behind an `X-API-Key` value and what it may do now: 401 `invalid_api_key` when
    unknown, wrong, expired, deleted or its organization deleted; 401 `api_key_revoked` when its
    creator is no longer an active member of the organization."""
    raw = raw.strip()
    parts = _split(raw)
    if parts is None:
        raise InvalidApiKey()
    found = await find_live_key(db, parts[0])
    if found is None or not hmac.compare_digest(found[0].key_hash, sha256_hex(raw)):
        raise InvalidApiKey()
    key, creator_role, creator_custom = found
    if key.expires_at is not None and key.expires_at <= datetime.now(UTC):
        raise InvalidApiKey()
    if creator_role is None:
        raise ApiKeyRevoked()
    await touch_key(db, key.id)
    return KeyAccess(key, effective_scopes(key.scopes, role_permissions(creator_role, creator_custom)))


class ApiKeyService:
    def __init__(self, db: AsyncSession, tenant: Tenant) -> None:
        self.db = db
        self.tenant = tenant
        self.repo = ApiKeyRepository(db, tenant.organization_id)

    def _acting_user(self) -> int | None:
        """The person a new key acts for: the caller, or the person the calling key acts for."""
        return self.tenant.user_id if self.tenant.user_id is not None else self.tenant.acting_for

    def _check_scopes(self, scopes: Sequence[str]) -> None:
        # A key may not carry more than its creator holds.
        beyond = set(scopes) - self.tenant.permissions - KEY_ONLY_SCOPES
        if beyond:
            raise ScopesBeyondCaller(sorted(beyond))

    async def create(self, data: ApiKeyCreate) -> tuple[ApiKey, str]:
        self._check_scopes(data.scopes)
        prefix, raw = _new_secret()
        key = ApiKey(
            name=data.name,
            scopes=data.scopes,
            prefix=prefix,
            key_hash=sha256_hex(raw),
            created_by_id=self._acting_user(),
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

    async def reissue(self, key_id: int) -> tuple[ApiKey, str]:
        """A new secret for a key, acting from now on for the caller (who must hold its scopes); the
        old secret stops working at once. Name, scopes and expiry stay."""
        key = await self.get(key_id)
        self._check_scopes(key.scopes)
        prefix, raw = _new_secret()
        reissued = await self.repo.reissue(key.id, prefix, sha256_hex(raw), self._acting_user())
        if reissued is None:
            raise ApiKeyNotFound()
        return reissued, raw

    async def delete(self, key_id: int) -> None:
        if not await self.repo.delete(key_id):
            raise ApiKeyNotFound()
