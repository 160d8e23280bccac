"""Queue a job at most once at a time: a Redis flag marks it queued, and the job clears the flag
when it starts (before it reads anything), so work committed after that start queues it again.
Without Redis every request queues the job (it is safe to run twice)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
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
    return fresh and _send(flag, send)


def _send(flag: str, send: Callable[[], Any]) -> bool:
    """Call `send`; when it fails, clear `flag` so that the next request queues the job again."""
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


class Wakeup:
    """A job that keeps running while work keeps coming, woken without a new task per commit.

    `notify` (after a commit) marks work waiting (`dirty`) and queues the job only when none is
    queued or running (`queued`), in one round trip. The running job calls `take` before each pass
    (what was committed before it is seen by that pass) and `release` when it wants to stop: work
    marked after its last `take` keeps it running (or a fresh `notify` queued a new job), so no
    commit is left unseen. Without Redis every `notify` queues the job (safe to run twice), and a
    running job stops after its pass."""

    def __init__(self, name: str, ttl: float = FLAG_TTL_SECONDS) -> None:
        self.dirty = f"{name}:dirty"
        self.queued = f"{name}:queued"
        self.members = f"{name}:members"
        self.ttl = max(1, int(ttl))

    def notify(self, send: Callable[[], Any], members: Iterable[int] = ()) -> bool:
        """Mark work waiting, with `members` for the job to `take` (ids it is to look at); call
        `send` unless a job is queued or running (blocking)."""
        try:
            pipe = _redis().pipeline(transaction=False)
            if members := sorted(members):
                pipe.sadd(self.members, *members)
                pipe.expire(self.members, self.ttl)
            pipe.set(self.dirty, "1", ex=self.ttl)
            pipe.set(self.queued, "1", nx=True, ex=self.ttl)
            fresh = bool(pipe.execute()[-1])
        except Exception:
            fresh = True
        return fresh and _send(self.queued, send)

    def take(self) -> set[int]:
        """Before a pass: what is marked now is seen by it, and the members notified so far are
        returned (and forgotten, in the same step); the job stays marked as running."""
        with contextlib.suppress(Exception):
            pipe = _redis().pipeline(transaction=True)
            pipe.smembers(self.members)
            pipe.delete(self.members, self.dirty)
            pipe.set(self.queued, "1", ex=self.ttl)
            return {int(member) for member in pipe.execute()[0]}
        return set()

    def waiting(self) -> bool:
        """Whether work was marked since the last `take` (False without Redis)."""
        try:
            return bool(_redis().exists(self.dirty))
        except Exception:
            return False

    def release(self) -> bool:
        """Stop running; True when work came in meanwhile and this job must carry on."""
        try:
            pipe = _redis().pipeline(transaction=False)
            pipe.delete(self.queued)
            pipe.exists(self.dirty)
            if not pipe.execute()[1]:
                return False
            return bool(_redis().set(self.queued, "1", nx=True, ex=self.ttl))
        except Exception:
            return False
