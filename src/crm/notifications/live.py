"""Live delivery of notifications: after commit, each new notification's id is published on its
user's Redis channel; every API process streaming to that user (SSE) picks it up. Redis away →
nothing is published, the rows are stored all the same and a reconnecting stream reads them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import structlog
from redis.asyncio import Redis

from crm.config import get_settings

log = structlog.get_logger(__name__)

_clients: dict[tuple[int, str], Redis] = {}


def channel(user_id: int) -> str:
    return f"crm:notifications:{user_id}"


def _client() -> Redis:
    """One publishing client per event loop (the worker and the API each have their own)."""
    settings = get_settings()
    key = (id(asyncio.get_running_loop()), settings.redis_url)
    client = _clients.get(key)
    if client is None:
        timeout = settings.redis_timeout
        client = Redis.from_url(settings.redis_url, socket_connect_timeout=timeout, socket_timeout=timeout)
        _clients[key] = client
    return client


async def publish(rows: Iterable[tuple[int, int]]) -> None:
    """Publish `(notification id, user id)` pairs; failures are logged, never raised."""
    try:
        client = _client()
        async with client.pipeline(transaction=False) as pipe:
            for notification_id, user_id in rows:
                pipe.publish(channel(user_id), str(notification_id))
            await pipe.execute()
    except Exception:
        log.warning("notification_publish_failed")
