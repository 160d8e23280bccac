"""Queue a job at most once at a time: a Redis flag marks it queued, and the job clears the flag
when it starts (before it reads anything), so work committed after that start queues it again.
Without Redis every request queues the job (it is safe to run twice)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import structlog
from redis import Redis

from crm.config import get_settings

log = structlog.get_logger(__name__)

_clients: dict[str, Redis] = {}
#: A flag outlives a lost message by this much at most (the beat sweeps cover the rest).
FLAG_TTL_SECONDS = 60


def _redis() -> Redis:
    url = get_settings().redis_url
    client = _clients.get(url)
    if client is None:
        client = Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        _clients[url] = client
    return client


def enqueue_once(flag: str, send: Callable[[], Any], ttl: float = FLAG_TTL_SECONDS) -> bool:
    """Call `send` unless `flag` is already set (blocking: call it from a thread or the worker)."""
    try:
        fresh = bool(_redis().set(flag, "1", nx=True, ex=max(1, int(ttl))))
    except Exception:
        fresh = True
    if not fresh:
        return False
    try:
        send()
    except Exception:
        clear(flag)
        log.warning("enqueue_failed", flag=flag)
        return False
    return True


def clear(flag: str) -> None:
    with contextlib.suppress(Exception):  # without Redis nothing is flagged
        _redis().delete(flag)
