"""Worker heartbeats: each Celery worker writes `crm:worker:<hostname>` into Redis every
`INTERVAL` seconds (TTL `TTL`), from a timer in its main process; `/admin/health` lists the workers
whose mark is younger than a minute. The mark is written as soon as the worker is ready and removed
when it shuts down."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from celery import bootsteps
from redis import Redis
from redis.exceptions import RedisError

from crm.config import get_settings
from crm.worker.app import celery_app

log = structlog.get_logger(__name__)

KEY_PREFIX = "crm:worker:"
INTERVAL = 20.0
TTL = 90
#: Workers seen within this many seconds count as alive.
SEEN_WITHIN = 60


def worker_key(hostname: str) -> str:
    return f"{KEY_PREFIX}{hostname}"


def heartbeat_value(hostname: str, now: datetime | None = None) -> str:
    seen = (now or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    return orjson.dumps({"name": hostname, "last_seen": seen}).decode()


def _client() -> Redis:
    return Redis.from_url(
        get_settings().redis_url, socket_connect_timeout=2, socket_timeout=2, decode_responses=True
    )


def beat_once(hostname: str, client: Redis | None = None) -> None:
    """Write this worker's mark; a Redis failure is logged, never raised into the worker."""
    own = client is None
    redis = client or _client()
    try:
        redis.set(worker_key(hostname), heartbeat_value(hostname), ex=TTL)
    except RedisError as exc:
        log.warning("worker_heartbeat_failed", error=type(exc).__name__)
    finally:
        if own:
            redis.close()


class Heartbeat(bootsteps.StartStopStep):  # type: ignore[misc]
    """Worker bootstep: a repeating timer entry writing the heartbeat."""

    requires = ("celery.worker.components:Timer",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.tref: Any = None
        self.client: Redis | None = None

    def start(self, worker: Any) -> None:
        self.client = _client()
        beat_once(worker.hostname, self.client)
        self.tref = worker.timer.call_repeatedly(
            INTERVAL, beat_once, (worker.hostname, self.client), priority=10
        )

    def stop(self, worker: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        if self.client is not None:
            with contextlib.suppress(RedisError):
                self.client.delete(worker_key(worker.hostname))
            self.client.close()
            self.client = None


celery_app.steps["worker"].add(Heartbeat)
