"""Redis client that fails fast and lets callers fall back when Redis is away."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from fastapi import Request
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)
T = TypeVar("T")


class RedisUnavailable(Exception):
    """Redis could not be reached; the caller falls back to PostgreSQL or skips the cache."""


class SafeRedis:
    """Wraps the client: after a failure Redis is skipped for a short while instead of
    making every request wait for a connect timeout."""

    backoff_seconds = 2.0

    def __init__(self, client: Redis) -> None:
        self.client = client
        self._down_until = 0.0

    @classmethod
    def from_url(cls, url: str, timeout: float) -> SafeRedis:
        client = Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            decode_responses=True,
            health_check_interval=30,
        )
        return cls(client)

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def forget_failures(self) -> None:
        """Leave the back-off window at once (the next call asks Redis again)."""
        self._down_until = 0.0

    async def run(self, op: Callable[[Redis], Awaitable[T]]) -> T:
        """Run `op(client)`; raise RedisUnavailable when Redis is down."""
        if not self.available:
            raise RedisUnavailable
        try:
            return await op(self.client)
        except (RedisError, OSError) as exc:
            self._down_until = time.monotonic() + self.backoff_seconds
            log.warning("redis_unavailable", error=type(exc).__name__)
            raise RedisUnavailable from exc

    async def ping(self) -> bool:
        try:
            # A readiness probe always asks Redis itself, even inside the back-off window.
            return bool(await self.client.ping())
        except (RedisError, OSError):
            self._down_until = time.monotonic() + self.backoff_seconds
            return False

    async def close(self) -> None:
        await self.client.aclose()

    async def get(self, key: str) -> Any:
        return await self.run(lambda r: r.get(key))


def get_redis(request: Request) -> SafeRedis:
    redis: SafeRedis = request.app.state.redis
    return redis


async def redis_dependency(request: Request) -> SafeRedis:
    """`get_redis` as a dependency (FastAPI runs a plain function in a worker thread: ~0.1 ms)."""
    return get_redis(request)
