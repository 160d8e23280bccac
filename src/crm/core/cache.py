"""Per-organization result cache with a generation number (SPEC §7).

Every cached value is stored with the organization's generation at the time it was computed. A write
that changes the underlying data bumps the generation after commit, which makes all older values
stale at once — exact and cheap (one INCR). When Redis is away, values are computed every time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from crm.core.db import on_commit
from crm.core.metrics import CACHE
from crm.core.redis import RedisUnavailable, SafeRedis

log = structlog.get_logger(__name__)


def _gen_key(organization_id: int) -> str:
    return f"gen:{organization_id}"


def _value_key(organization_id: int, name: str, params: dict[str, Any]) -> str:
    digest = hashlib.sha1(orjson.dumps(params, option=orjson.OPT_SORT_KEYS, default=str)).hexdigest()  # noqa: S324
    return f"cache:{organization_id}:{name}:{digest}"


_in_flight: dict[str, asyncio.Future[bytes]] = {}


class OrgCache:
    def __init__(self, redis: SafeRedis, ttl_seconds: int) -> None:
        self.redis = redis
        self.ttl = ttl_seconds

    async def get_or_compute(
        self,
        organization_id: int,
        name: str,
        params: dict[str, Any],
        compute: Callable[[], Awaitable[Any]],
    ) -> tuple[bytes, bool]:
        """JSON bytes of the value and whether it came from the cache."""
        key = _value_key(organization_id, name, params)
        generation: str | None = None
        try:

            async def read(r):  # type: ignore[no-untyped-def]
                async with r.pipeline(transaction=False) as pipe:
                    pipe.get(_gen_key(organization_id))
                    pipe.get(key)
                    return await pipe.execute()

            generation, stored = await self.redis.run(read)
            generation = generation or "0"
            if stored:
                gen_of_value, _, payload = stored.partition("|")
                if gen_of_value == generation:
                    CACHE.labels(name, "hit").inc()
                    return payload.encode(), True
        except RedisUnavailable:
            generation = None
        CACHE.labels(name, "miss" if generation is not None else "bypass").inc()

        # Single flight: concurrent misses of one value in this process share one computation instead
        # of all hitting the database at once right after an invalidation.
        flight = f"{key}|{generation}"
        running = _in_flight.get(flight)
        if running is not None:
            with contextlib.suppress(Exception):
                return await asyncio.shield(running), False
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        _in_flight[flight] = future
        try:
            payload_bytes = orjson.dumps(await compute(), default=str)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters compute on their own
            raise
        else:
            future.set_result(payload_bytes)
        finally:
            _in_flight.pop(flight, None)
        if generation is not None:
            try:

                async def write(r):  # type: ignore[no-untyped-def]
                    async with r.pipeline(transaction=False) as pipe:
                        pipe.set(key, f"{generation}|{payload_bytes.decode()}", ex=self.ttl)
                        await pipe.execute()

                await self.redis.run(write)
            except RedisUnavailable:
                pass
        return payload_bytes, False

    async def count(
        self, organization_id: int, name: str, params: dict[str, Any], compute: Callable[[], Awaitable[int]]
    ) -> int:
        """A cached row count (list totals, SPEC §19.17), exact because writes bump the generation."""
        payload, _hit = await self.get_or_compute(organization_id, f"count:{name}", params, compute)
        return int(orjson.loads(payload))

    async def bump(self, organization_id: int) -> None:
        # When Redis is away the bump is lost; values cached before the outage then live at most the TTL.
        with contextlib.suppress(RedisUnavailable):
            await self.redis.run(lambda r: r.incr(_gen_key(organization_id)))


_bumps: dict[tuple[int, int], asyncio.Future[None]] = {}
_sending: set[asyncio.Task[None]] = set()


async def bump_committed(redis: SafeRedis, organization_id: int) -> None:
    """Bump the organization's generation for a write that has committed. Writes committed in the
    same turn of the event loop share one INCR, sent once they have all asked (every one of them
    committed before it is sent, so none is left behind)."""
    key = (id(redis), organization_id)
    waiting = _bumps.get(key)
    if waiting is None:
        loop = asyncio.get_running_loop()
        waiting = _bumps[key] = loop.create_future()
        loop.call_soon(_send_bump, redis, organization_id, key, waiting)
    await asyncio.shield(waiting)


def _send_bump(
    redis: SafeRedis, organization_id: int, key: tuple[int, int], waiting: asyncio.Future[None]
) -> None:
    _bumps.pop(key, None)
    task = asyncio.ensure_future(OrgCache(redis, 0).bump(organization_id))
    _sending.add(task)

    def done(task: asyncio.Task[None]) -> None:
        _sending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("cache_bump_failed", error=type(task.exception()).__name__)
        if not waiting.done():  # a failed bump is one lost to Redis: values live at most their TTL
            waiting.set_result(None)

    task.add_done_callback(done)


def invalidate_after_commit(db: AsyncSession, redis: SafeRedis, organization_id: int) -> None:
    """Bump the organization's cache generation once this transaction commits (once per transaction)."""
    pending: set[int] = db.info.setdefault("cache_bumps", set())
    if organization_id in pending:
        return
    pending.add(organization_id)

    async def bump() -> None:
        db.info.get("cache_bumps", set()).discard(organization_id)
        await OrgCache(redis, 0).bump(organization_id)

    on_commit(db, bump)
