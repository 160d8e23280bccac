"""`GET /notifications/stream`: Server-Sent Events of the caller's new notifications.

Each stream subscribes to its user's Redis channel (see `live.py`), so a notification written by
any process — another API process, the worker — reaches every stream of that user. The channel
only says "something new"; the rows themselves are read from PostgreSQL (`id > last sent`), which
also makes `Last-Event-ID` resume exact: a reconnecting client gets everything it missed. A comment
line is sent every heartbeat interval so proxies keep the connection open. Redis away → 503 before
the stream starts; a stream whose Redis goes away ends (the client reconnects and resumes).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import structlog
from redis.asyncio import Redis
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.config import get_settings
from crm.core.errors import ServiceUnavailable
from crm.core.redis import SafeRedis
from crm.models import Notification
from crm.notifications.live import channel
from crm.notifications.schemas import NotificationRead

log = structlog.get_logger(__name__)

#: A ticket opens its first stream within this time; afterwards it reopens the stream (a reconnect,
#: with `Last-Event-ID`) within `RECONNECT_SECONDS` of the moment its stream was last alive, for at
#: most `TICKET_MAX_AGE_SECONDS` from its issue.
TICKET_TTL_SECONDS = 60
RECONNECT_SECONDS = 60
TICKET_MAX_AGE_SECONDS = 12 * 3600
BATCH = 100
_clients: dict[tuple[int, str], Redis] = {}


class StreamUnavailable(ServiceUnavailable):
    code = "stream_unavailable"


def _subscriber() -> Redis:
    """A client for subscriptions (no read timeout: a subscription waits), one per event loop."""
    url = get_settings().redis_url
    key = (id(asyncio.get_running_loop()), url)
    client = _clients.get(key)
    if client is None:
        client = Redis.from_url(url, socket_connect_timeout=1.0)
        _clients[key] = client
    return client


def _ticket_key(ticket: str) -> str:
    return f"crm:stream-ticket:{ticket}"


def _used_key(ticket: str) -> str:
    return f"crm:stream-ticket-used:{ticket}"


#: Spend a fresh ticket (it becomes a used one, kept for reconnects), or, for a reconnect, take a
#: used one and extend its reconnect window. Atomic, so a fresh ticket opens one first stream.
_REDEEM = """
local value = redis.call('GETDEL', KEYS[1])
if value then
    redis.call('SET', KEYS[2], value, 'EX', ARGV[1])
    return value
end
if ARGV[2] == '1' then
    value = redis.call('GET', KEYS[2])
    if value then redis.call('EXPIRE', KEYS[2], ARGV[1]) end
    return value
end
return false
"""


async def issue_ticket(redis: SafeRedis, user_id: int, organization_id: int) -> str:
    ticket = secrets.token_urlsafe(32)
    value = f"{user_id}:{organization_id}:{int(time.time())}"
    try:
        await redis.run(lambda r: r.set(_ticket_key(ticket), value, ex=TICKET_TTL_SECONDS))
    except Exception:
        raise StreamUnavailable("Live notifications are unavailable right now") from None
    return ticket


async def redeem_ticket(redis: SafeRedis, ticket: str, *, reconnect: bool = False) -> tuple[int, int] | None:
    """(user id, organization id) of a ticket: a fresh one is spent by its first stream; a used one
    serves a reconnect (`reconnect`: the client sent `Last-Event-ID`) within its window. None when
    unknown, expired, or used and this is not a reconnect."""
    try:
        value = await redis.run(
            lambda r: r.eval(
                _REDEEM,
                2,
                _ticket_key(ticket),
                _used_key(ticket),
                RECONNECT_SECONDS,
                "1" if reconnect else "0",
            )
        )
    except Exception:
        raise StreamUnavailable("Live notifications are unavailable right now") from None
    if not value:
        return None
    if isinstance(value, bytes):
        value = value.decode()
    user_id, organization_id, issued = [*str(value).split(":"), "0"][:3]
    if issued != "0" and time.time() - int(issued) > TICKET_MAX_AGE_SECONDS:
        return None
    return int(user_id), int(organization_id)


async def keep_ticket(redis: SafeRedis, ticket: str) -> None:
    """While its stream is open, a used ticket stays good for a reconnect."""
    with contextlib.suppress(Exception):
        await redis.run(lambda r: r.expire(_used_key(ticket), RECONNECT_SECONDS))


def _scope(user_id: int, organization_id: int) -> list[Any]:
    return [
        Notification.user_id == user_id,
        or_(Notification.organization_id == organization_id, Notification.organization_id.is_(None)),
    ]


async def _latest_id(maker: async_sessionmaker[AsyncSession], user_id: int, organization_id: int) -> int:
    async with maker() as session:
        return int(
            await session.scalar(select(func.max(Notification.id)).where(*_scope(user_id, organization_id)))
            or 0
        )


async def _after(
    maker: async_sessionmaker[AsyncSession], user_id: int, organization_id: int, last_id: int
) -> list[Notification]:
    async with maker() as session:
        rows = await session.scalars(
            select(Notification)
            .where(
                *_scope(user_id, organization_id), Notification.id > last_id, Notification.read_at.is_(None)
            )
            .order_by(Notification.id)
            .limit(BATCH)
        )
        return list(rows.all())


def _frame(row: Notification) -> bytes:
    data = NotificationRead.model_validate(row).model_dump(mode="json")
    return b"id: %d\nevent: notification\ndata: " % row.id + orjson.dumps(data) + b"\n\n"


async def open_stream(
    maker: async_sessionmaker[AsyncSession],
    user_id: int,
    organization_id: int,
    last_event_id: int | None,
    is_disconnected: Any,
    keepalive: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[bytes]:
    """Subscribe first (503 when Redis is away), then return the event iterator."""
    pubsub = _subscriber().pubsub(ignore_subscribe_messages=True)
    try:
        async with asyncio.timeout(2.0):
            await pubsub.subscribe(channel(user_id))
    except Exception:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        raise StreamUnavailable("Live notifications are unavailable right now (Redis)") from None
    last_id = (
        last_event_id if last_event_id is not None else await _latest_id(maker, user_id, organization_id)
    )
    return _events(maker, pubsub, user_id, organization_id, last_id, is_disconnected, keepalive)


async def _events(
    maker: async_sessionmaker[AsyncSession],
    pubsub: Any,
    user_id: int,
    organization_id: int,
    last_id: int,
    is_disconnected: Any,
    keepalive: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[bytes]:
    heartbeat = get_settings().notification_stream_heartbeat_seconds
    try:
        # The id the stream starts after: a client reconnecting before any notification came still
        # sends `Last-Event-ID` (an `id` line alone sets it and dispatches no event).
        yield b"retry: 3000\nid: %d\n\n" % last_id
        pending = True  # on (re)connect, send what was missed
        while True:
            if pending:
                while True:
                    rows = await _after(maker, user_id, organization_id, last_id)
                    for row in rows:
                        last_id = row.id
                        yield _frame(row)
                    if len(rows) < BATCH:
                        break
            try:
                message = await pubsub.get_message(timeout=heartbeat)
            except Exception:
                log.warning("notification_stream_redis_lost", user_id=user_id)
                return
            pending = message is not None
            if not pending:
                if await is_disconnected():
                    return
                if keepalive is not None:
                    await keepalive()
                yield b": heartbeat\n\n"
    finally:
        with contextlib.suppress(Exception):  # Redis already gone
            await pubsub.aclose()
