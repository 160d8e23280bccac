"""What a signed-in user may do in an organization, cached in Redis.

One Redis round trip (`MGET`) answers both questions every tenant request asks: is the token's session
alive (`sess:<sid>`, see `crm.auth.revocation`) and what is the caller's role there
(`acc:<org>:<user>` = `<generation>|<json>`); it also reads the organization's custom-field definition
generation, so a write that validates custom fields needs no round trip of its own for it. Any change to
the organization's members, roles or existence bumps `accgen:<org>` after commit, which retires every
cached answer of that organization at once. Only positive answers are cached; with Redis away every
check goes to PostgreSQL.
"""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from crm.auth.exceptions import InvalidTokenError
from crm.auth.revocation import session_alive
from crm.core.db import on_commit
from crm.core.redis import RedisUnavailable, SafeRedis
from crm.core.security import TokenClaims
from crm.custom_fields.service import generation_key, prefetched_generation
from crm.organizations.repository import OrganizationRepository

ACCESS_TTL = 60
Access = tuple[str, list[str] | None]


async def member_access(
    redis: SafeRedis, db: AsyncSession, claims: TokenClaims, organization_id: int
) -> Access | None:
    """(role, custom role permissions) of the token's user, after checking the session is alive.
    None when the user is not a member of that live organization."""
    sid, user = claims.session_id, claims.user_id
    keys = (
        f"sess:{sid}",
        f"accgen:{organization_id}",
        f"acc:{organization_id}:{user}",
        generation_key(organization_id),
    )
    try:
        marks: list[Any] = await redis.run(lambda r: r.mget(keys))
    except RedisUnavailable:
        if not await session_alive(redis, db, sid, user):
            raise InvalidTokenError("Session has been revoked") from None
        return await OrganizationRepository(db).member_access(organization_id, user)

    session_mark, generation, cached, definitions_generation = marks
    # The custom-field definition generation rides along, saving the create its own round trip.
    prefetched_generation(db, organization_id, definitions_generation)
    if session_mark == "0" or (session_mark is None and not await session_alive(redis, db, sid, user)):
        raise InvalidTokenError("Session has been revoked")
    generation = generation or "0"
    if cached:
        cached_generation, _, payload = cached.partition("|")
        if cached_generation == generation:
            role, permissions = orjson.loads(payload)
            return role, permissions

    access = await OrganizationRepository(db).member_access(organization_id, user)
    if access is not None:
        value = f"{generation}|{orjson.dumps(list(access)).decode()}"
        with contextlib.suppress(RedisUnavailable):
            await redis.run(lambda r: r.set(keys[2], value, ex=ACCESS_TTL))
    return access


def access_changed_after_commit(db: AsyncSession, redis: SafeRedis | None, organization_id: int) -> None:
    """Retire every cached access answer of the organization once this transaction commits."""
    if redis is None:
        return

    async def bump() -> None:
        # When Redis is away, cached answers live at most ACCESS_TTL.
        with contextlib.suppress(RedisUnavailable):
            await redis.run(lambda r: r.incr(f"accgen:{organization_id}"))

    on_commit(db, bump)
