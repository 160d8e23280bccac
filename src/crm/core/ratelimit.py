"""Fixed-window rate limits in Redis, with a PostgreSQL fallback when Redis is down.

Answers follow the IETF RateLimit header draft: `RateLimit-Policy: "login";q=10;w=60`,
`RateLimit: "login";r=0;t=42` and `Retry-After` on 429.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends, Request, Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from crm.config import Settings, get_settings
from crm.core.db import SessionDep
from crm.core.errors import RateLimited
from crm.core.redis import RedisUnavailable, SafeRedis

_WINDOWS = {"second": 1, "minute": 60, "hour": 3600}
#: Longer keys (an email, a forwarded address) are hashed: the PostgreSQL fallback column is 300 long.
_MAX_KEY = 128


@dataclass(frozen=True, slots=True)
class Rate:
    limit: int
    window: int

    @classmethod
    def parse(cls, value: str) -> Rate | None:
        """`10/minute` → Rate(10, 60); `off` → None."""
        if value == "off":
            return None
        count, unit = value.split("/")
        return cls(int(count), _WINDOWS[unit])


@dataclass(frozen=True, slots=True)
class Usage:
    name: str
    rate: Rate
    count: int
    reset: int  # seconds until the window ends

    @property
    def remaining(self) -> int:
        return max(self.rate.limit - self.count, 0)

    @property
    def exceeded(self) -> bool:
        return self.count > self.rate.limit

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Policy": f'"{self.name}";q={self.rate.limit};w={self.rate.window}',
            "RateLimit": f'"{self.name}";r={self.remaining};t={self.reset}',
        }
        if self.exceeded:
            headers["Retry-After"] = str(self.reset)
        return headers

    def error(self) -> RateLimited:
        return RateLimited(
            f"Too many requests; try again in {self.reset} s.",
            headers=self.headers(),
            retry_after=self.reset,
        )


class RateLimiter:
    def __init__(self, redis: SafeRedis, session: AsyncSession) -> None:
        self.redis = redis
        self.session = session

    async def _add(self, name: str, key: str, rate: Rate, amount: int) -> Usage:
        now = time.time()
        window_index = int(now // rate.window)
        reset = max(math.ceil((window_index + 1) * rate.window - now), 1)
        if len(key) > _MAX_KEY:
            key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
        redis_key = f"rl:{name}:{key}:{window_index}"
        try:
            if amount:

                async def incr(r):  # type: ignore[no-untyped-def]
                    async with r.pipeline(transaction=True) as pipe:
                        pipe.incrby(redis_key, amount)
                        pipe.expire(redis_key, rate.window + 1)
                        return (await pipe.execute())[0]

                count = int(await self.redis.run(incr))
            else:
                count = int(await self.redis.get(redis_key) or 0)
        except RedisUnavailable:
            count = await self._add_pg(redis_key, amount, reset)
        return Usage(name, rate, count, reset)

    async def _add_pg(self, key: str, amount: int, reset: int) -> int:
        if not amount:
            row = await self.session.execute(
                text("SELECT count FROM rate_limit_counter WHERE key = :key AND expires_at > now()"),
                {"key": key},
            )
            return int(row.scalar_one_or_none() or 0)
        expires = datetime.now(UTC) + timedelta(seconds=reset)
        result = await self.session.execute(
            text(
                "INSERT INTO rate_limit_counter (key, count, expires_at) VALUES (:key, :amount, :expires)"
                " ON CONFLICT (key) DO UPDATE SET count = rate_limit_counter.count + :amount"
                " RETURNING count"
            ),
            {"key": key, "amount": amount, "expires": expires},
        )
        return int(result.scalar_one())

    async def hit(self, name: str, key: str, rate: Rate | None) -> Usage | None:
        """Count one request; raise 429 when the window is already full."""
        if rate is None:
            return None
        usage = await self._add(name, key, rate, 1)
        if usage.exceeded:
            raise usage.error()
        return usage

    async def peek(self, name: str, key: str, rate: Rate | None) -> Usage | None:
        """Current usage without counting (e.g. failed logins checked before verifying)."""
        if rate is None:
            return None
        return await self._add(name, key, rate, 0)

    async def add_failure(self, name: str, key: str, rate: Rate | None) -> Usage | None:
        if rate is None:
            return None
        return await self._add(name, key, rate, 1)


async def get_rate_limiter(request: Request, session: SessionDep) -> RateLimiter:
    return RateLimiter(request.app.state.redis, session)


RateLimiterDep = Annotated[RateLimiter, Depends(get_rate_limiter)]


def client_ip(request: Request, settings: Settings | None = None) -> str:
    """The caller's address; `X-Forwarded-For` is believed only from a trusted proxy."""
    settings = settings or get_settings()
    peer = request.client.host if request.client else "unknown"
    proxies = settings.trusted_proxy_list
    forwarded = request.headers.get("x-forwarded-for")
    if not proxies or not forwarded or not _is_trusted(peer, proxies):
        return peer
    # Walk right to left, skipping our own proxies; the first untrusted hop is the client.
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, proxies):
            return hop
    return hops[0] if hops else peer


def _is_trusted(address: str, proxies: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for proxy in proxies:
        try:
            if ip in ipaddress.ip_network(proxy, strict=False):
                return True
        except ValueError:
            continue
    return False


def limit_per_ip(name: str, setting: str) -> Callable[..., object]:
    """Dependency: count the request against `name` for the caller's IP (setting = Settings attr)."""

    async def dependency(request: Request, response: Response, limiter: RateLimiterDep) -> None:
        settings = get_settings()
        rate = Rate.parse(getattr(settings, setting))
        usage = await limiter.hit(name, f"ip:{client_ip(request, settings)}", rate)
        if usage is not None:
            response.headers.update(usage.headers())

    return dependency
