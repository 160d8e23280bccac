"""`/admin/health`: PostgreSQL, Redis and the broker, live workers and each integration's last sync.

Every probe has its own timeout, so the answer comes within a few seconds whatever is down. Workers
are those whose heartbeat mark (`crm.admin.heartbeat`) is younger than a minute."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import structlog
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from crm.admin.heartbeat import KEY_PREFIX, SEEN_WITHIN
from crm.admin.repository import IntegrationRepository
from crm.admin.schemas import IntegrationHealth, SystemHealth, WorkerSeen
from crm.config import get_settings
from crm.core.redis import RedisUnavailable, SafeRedis
from crm.core.schemas import from_row
from crm.organizations.dependencies import Tenant

log = structlog.get_logger(__name__)

PROBE_TIMEOUT = 3.0


async def database_ok(db: AsyncSession) -> bool:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            await db.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


def _kombu_ping(url: str) -> None:
    from kombu.connection import Connection

    with Connection(url, connect_timeout=PROBE_TIMEOUT) as conn:  # type: ignore[no-untyped-call]
        conn.ensure_connection(max_retries=1, timeout=PROBE_TIMEOUT)


async def broker_ok(url: str | None = None) -> bool:
    """Can the Celery broker be reached? Redis brokers are pinged; others are connected to."""
    url = url or get_settings().celery_broker_url
    try:
        async with asyncio.timeout(PROBE_TIMEOUT + 1):
            if url.startswith(("redis://", "rediss://", "unix://")):
                client = Redis.from_url(
                    url, socket_connect_timeout=PROBE_TIMEOUT, socket_timeout=PROBE_TIMEOUT
                )
                try:
                    return bool(await client.ping())
                finally:
                    await client.aclose()
            await asyncio.to_thread(_kombu_ping, url)
            return True
    except Exception as exc:
        log.warning("broker_unreachable", error=type(exc).__name__)
        return False


async def workers_seen(redis: SafeRedis, now: datetime | None = None) -> list[WorkerSeen]:
    now = now or datetime.now(UTC)

    async def read(r: Any) -> list[Any]:
        keys = [key async for key in r.scan_iter(match=f"{KEY_PREFIX}*", count=100)]
        return list(await r.mget(keys)) if keys else []

    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            values = await redis.run(read)
    except (RedisUnavailable, TimeoutError):
        return []
    seen: list[WorkerSeen] = []
    for value in values:
        try:
            mark = orjson.loads(value)
            worker = WorkerSeen(name=str(mark["name"]), last_seen=mark["last_seen"])
        except Exception:  # a foreign or half-written mark is not a worker
            log.debug("worker_mark_unreadable")
            continue
        if worker.last_seen >= now - timedelta(seconds=SEEN_WITHIN):
            seen.append(worker)
    return sorted(seen, key=lambda w: w.name)


async def system_health(db: AsyncSession, redis: SafeRedis, tenant: Tenant) -> SystemHealth:
    database, redis_up, broker = await asyncio.gather(database_ok(db), redis.ping(), broker_ok())
    workers = await workers_seen(redis) if redis_up else []
    integrations: list[IntegrationHealth] = []
    if database:
        repo = IntegrationRepository(db, tenant.organization_id)
        rows = await repo.all()
        running = await repo.active_jobs([r.id for r in rows])
        integrations = [from_row(IntegrationHealth, r, running_job_id=running.get(r.id)) for r in rows]
    return SystemHealth(
        database="ok" if database else "down",
        redis="ok" if redis_up else "down",
        broker="ok" if broker else "down",
        workers=workers,
        integrations=integrations,
    )
