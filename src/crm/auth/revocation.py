"""Is a session still alive? Answered from Redis, with PostgreSQL behind it.

Each session has a key `sess:<id>`: "1" alive, "0" revoked. A miss is filled from the database
with `SET NX`, so a revocation written meanwhile ("0", plain `SET`) is never overwritten. The alive
mark lives 60 s; the revoked mark outlives every access token of the session. When Redis is
down every check goes to PostgreSQL.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from crm.auth.repository import SessionRepository
from crm.config import get_settings
from crm.core.db import on_commit
from crm.core.redis import RedisUnavailable, SafeRedis

ALIVE_TTL = 60


def _key(session_id: int) -> str:
    return f"sess:{session_id}"


async def session_alive(redis: SafeRedis, db: AsyncSession, session_id: int, user_id: int) -> bool:
    try:
        cached = await redis.get(_key(session_id))
    except RedisUnavailable:
        return await SessionRepository(db).is_active(session_id, user_id)
    if cached is not None:
        return bool(cached == "1")
    alive = await SessionRepository(db).is_active(session_id, user_id)
    try:
        if alive:
            await redis.run(lambda r: r.set(_key(session_id), "1", ex=ALIVE_TTL, nx=True))
        else:
            await _mark_revoked(redis, [session_id])
    except RedisUnavailable:
        pass
    return alive


async def _mark_revoked(redis: SafeRedis, session_ids: Iterable[int]) -> None:
    settings = get_settings()
    ttl = settings.access_token_expire_minutes * 60 + 120
    ids = list(session_ids)
    if not ids:
        return

    async def write(r):  # type: ignore[no-untyped-def]
        async with r.pipeline(transaction=False) as pipe:
            for sid in ids:
                pipe.set(_key(sid), "0", ex=ttl)
            await pipe.execute()

    await redis.run(write)


def revoke_after_commit(db: AsyncSession, redis: SafeRedis, session_ids: Iterable[int]) -> None:
    """Mark sessions revoked in Redis once the database change is committed."""
    ids = list(session_ids)

    async def publish() -> None:
        # Reads fall back to PostgreSQL while Redis is down; a stale "1" expires within ALIVE_TTL.
        with contextlib.suppress(RedisUnavailable):
            await _mark_revoked(redis, ids)

    if ids:
        on_commit(db, publish)
