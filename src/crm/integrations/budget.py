"""Provider rate budgets shared by every worker process (SPEC §13, §20.15).

A budget is a GCRA token bucket (`rate` requests per second, bursts of `burst`) kept in Redis under a
key per provider account, updated by one Lua script that reads Redis's own clock, so every process
spends from the same bucket whatever its own clock says. `pause(seconds)` stops the whole account
(a 503/429 from the provider) for everyone. When Redis does not answer, a process falls back to a
bucket of its own at a fraction of the rate (`FALLBACK_SHARE`), so a few processes together still
stay under the provider's limit; it tries Redis again after `REDIS_RETRY_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import weakref

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)

#: Share of the rate (and burst) one process allows itself while Redis is away.
FALLBACK_SHARE = 0.25
REDIS_RETRY_SECONDS = 5.0
REDIS_TIMEOUT = 0.5

_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local emission = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > now then return tostring(paused - now) end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + emission * cost
local allow_at = new_tat - emission * burst
if allow_at > now then return tostring(allow_at - now) end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(new_tat - now + 1000))
return '0'
"""
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local untl = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if untl > current then
  redis.call('SET', KEYS[1], tostring(untl), 'PX', math.ceil(tonumber(ARGV[1])) + 1000)
end
return '0'
"""


def account_key(provider: str, *parts: str) -> str:
    """A Redis key naming one provider account (never the secret itself)."""
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]
    return f"crm:budget:{provider}:{digest}"


class _LocalBucket:
    """The same GCRA in one process (monotonic clock)."""

    def __init__(self) -> None:
        self.tat = 0.0
        self.paused_until = 0.0

    def try_take(self, emission: float, burst: int, cost: int) -> float:
        now = time.monotonic()
        if self.paused_until > now:
            return self.paused_until - now
        new_tat = max(self.tat, now) + emission * cost
        allow_at = new_tat - emission * burst
        if allow_at > now:
            return allow_at - now
        self.tat = new_tat
        return 0.0


class Budget:
    """One provider account's budget; `await acquire()` before each request."""

    def __init__(self, key: str, rate: float, burst: int, redis_url: str | None) -> None:
        self.key = key
        self.rate = rate
        self.burst = max(1, burst)
        self.redis_url = redis_url
        self._redis: Redis | None = None
        self._redis_down_until = 0.0
        self._local = _LocalBucket()
        self.fallbacks = 0

    def _client(self) -> Redis | None:
        if self.redis_url is None or time.monotonic() < self._redis_down_until:
            return None
        if self._redis is None:
            self._redis = Redis.from_url(
                self.redis_url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
            )
        return self._redis

    def _redis_failed(self) -> None:
        if self._redis_down_until < time.monotonic():
            log.warning("provider_budget_redis_unavailable", key=self.key, fallback_share=FALLBACK_SHARE)
        self._redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
        self.fallbacks += 1

    async def _shared_wait(self, redis: Redis, cost: int) -> float:
        emission_ms = 1000.0 / self.rate
        answer = await redis.eval(
            _GCRA, 2, self.key, self.key + ":pause", str(emission_ms), str(self.burst), str(cost)
        )
        return float(answer) / 1000.0

    def _local_wait(self, cost: int) -> float:
        rate = self.rate * FALLBACK_SHARE
        burst = max(1, int(self.burst * FALLBACK_SHARE))
        return self._local.try_take(1.0 / rate, burst, min(cost, burst))

    async def acquire(self, cost: int = 1) -> None:
        """Wait until a request of this weight (in units of the budget) may be sent."""
        cost = max(1, min(cost, self.burst))
        while True:
            redis = self._client()
            wait: float
            if redis is not None:
                try:
                    wait = await self._shared_wait(redis, cost)
                except (RedisError, OSError, TimeoutError):
                    self._redis_failed()
                    continue
            else:
                wait = self._local_wait(cost)
            if wait <= 0:
                return
            await asyncio.sleep(min(wait, 30.0) + 0.001)

    async def pause(self, seconds: float) -> None:
        """Nobody sends to this account for `seconds` (the provider asked us to slow down)."""
        self._local.paused_until = max(self._local.paused_until, time.monotonic() + seconds)
        redis = self._client()
        if redis is None:
            return
        try:
            await redis.eval(_PAUSE, 1, self.key + ":pause", str(seconds * 1000.0))
        except (RedisError, OSError, TimeoutError):
            self._redis_failed()

    async def aclose(self) -> None:
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
            self._redis = None


#: Budgets per event loop and key, so that clients of one account in a process share one object.
_BUDGETS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, float, int], Budget]] = (
    weakref.WeakKeyDictionary()
)


def shared_budget(key: str, rate: float, burst: int, redis_url: str | None) -> Budget:
    per_loop = _BUDGETS.setdefault(asyncio.get_running_loop(), {})
    budget = per_loop.get((key, rate, burst))
    if budget is None:
        budget = per_loop[(key, rate, burst)] = Budget(key, rate, burst, redis_url)
    return budget
