"""Sending deliveries, one subscription at a time and in event order.

A delivery job holds a PostgreSQL advisory lock on its subscription for the run, on a connection
of its own (so two workers never send for the same subscription at once, and a worker that dies
releases it at once: the server drops the lock with the connection), then sends that
subscription's due deliveries in the order their events were published, each in its own short
transaction. A failure schedules the next attempt (exponential backoff with jitter) and stops the
run: later events wait, so a subscriber sees every event in order. After the last attempt fails
the delivery is `failed`, the subscription is disabled and the organization's admins are
notified. Other subscriptions have their own jobs, so a slow or dead one never delays them.

Delivery is at least once: a worker killed between sending and recording resends the same message
with the same `webhook-id`, which receivers use to drop duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, cast

import asyncpg
import httpx
import orjson
import structlog
from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from crm.config import get_settings
from crm.core.db import session_scope
from crm.integrations.ssrf import UrlNotAllowed, allow_private_urls, check_url
from crm.models import OutboxEvent, Webhook, WebhookDelivery
from crm.notifications.service import notify_users, organization_admin_ids
from crm.webhooks import signing
from crm.webhooks.client import WebhookClient

log = structlog.get_logger(__name__)

LOCK_CLASS = 71_013
#: One job sends at most this many deliveries (then queues itself again), so jobs stay short.
MAX_PER_RUN = 500
MAX_RUN_SECONDS = 30.0
MAX_ERROR_CHARS = 500
#: Deliveries read at once, and successes recorded together (a worker dying in between resends at
#: most these, with their same `webhook-id`).
HEADS = 100
FLUSH_EVERY = 20


@dataclass
class RunResult:
    sent: int = 0
    failed: int = 0
    #: When the subscription has a delivery due later (a retry), in seconds from now.
    retry_in: float | None = None
    more: bool = False
    #: Another run holds the subscription.
    busy: bool = False
    #: The last delivery sent: the run reads on from there (see `Statements.heads`).
    after: int = 0


def message_id(delivery_id: int) -> str:
    """The `webhook-id`: one per event and subscription, the same for every attempt."""
    return f"msg_{delivery_id}"


def event_body(event: OutboxEvent) -> bytes:
    """The Standard Webhooks payload: `{type, timestamp, data}` plus the event id. The same event
    goes to every subscriber: its body is made once per process (the relay makes it as it fans
    the event out, so the senders of the same process find it made)."""
    body = _made.get(event.id)
    if body is None:
        body = _body(event.id, event.event_type, event.created_at, event.organization_id, event.payload)
        _keep(_made, event.id, body)
    return body


def _body(
    event_id: int, event_type: str, created_at: datetime, organization_id: int, payload: dict[str, Any]
) -> bytes:
    return orjson.dumps(
        {
            "id": f"evt_{event_id}",
            "type": event_type,
            "timestamp": created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "organization_id": organization_id,
            "data": payload,
        }
    )


def _keep(cache: dict[int, bytes], event_id: int, body: bytes) -> None:
    if len(cache) >= BODY_CACHE:
        cache.pop(next(iter(cache)))  # the oldest: senders move forward
    cache[event_id] = body


#: Messages made by the relay as it fans events out (the newest), and messages senders read back
#: from the outbox (a sender further behind than `BODY_CACHE` events: the other subscribers'
#: senders, about as far behind, find them here rather than each reading and making them again).
_made: dict[int, bytes] = {}
_read: dict[int, bytes] = {}
BODY_CACHE = 5000


def forget_messages() -> None:
    """Drop the messages made in this process (for a database whose event ids start over)."""
    _made.clear()
    _read.clear()


def retry_delay(attempts: int) -> float | None:
    """Seconds before attempt `attempts + 1`, or None when `attempts` was the last one."""
    delays = get_settings().webhook_retry_delay_list
    if attempts > len(delays):
        return None
    base = delays[attempts - 1]
    return base * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not a secret


class Poster:
    """Posts messages with `WebhookClient` (kept connections that go only to addresses that
    passed the SSRF check), after checking each URL (`check_url`), as `guarded_client` does. No
    redirect is followed: a 3xx is a failed attempt."""

    def __init__(self, client: WebhookClient | None = None) -> None:
        self.client = client or WebhookClient()

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> int:
        private = allow_private_urls()
        await check_url(url, allow_private=private, field="", resolve=False)
        limit = get_settings().webhook_timeout_seconds
        return await self.client.post(
            url, headers, body, timeout=limit, connect_timeout=min(limit, 3.0), allow_private=private
        )

    async def aclose(self) -> None:
        await self.client.aclose()


async def send_one(
    client: Poster, url: str, secret: str, delivery_id: int, body: bytes
) -> tuple[int | None, int, str | None]:
    """POST one message; (status code, milliseconds, error). Only a 2xx is a success."""
    started = time.perf_counter()
    code: int | None = None
    error: str | None = None
    try:
        headers = signing.headers(secret, message_id(delivery_id), int(time.time()), body)
        code = await client.post(url, headers, body)
        if not 200 <= code < 300:
            error = f"HTTP {code}" + (" (redirects are not followed)" if 300 <= code < 400 else "")
    except UrlNotAllowed as exc:
        error = f"url_not_allowed: {exc.reason}"
    except httpx.TimeoutException:
        error = "timeout"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS] or type(exc).__name__
    return code, int((time.perf_counter() - started) * 1000), error


class Head(NamedTuple):
    """A pending delivery (read as a plain row, no ORM object)."""

    id: int
    webhook_id: int
    organization_id: int
    attempts: int
    next_attempt_at: datetime
    event_id: int


# The senders' own statements. They run often (a few per relay pass and subscription), so they are
# plain asyncpg statements on a connection the senders keep (prepared once per connection, no pool
# checkout, no ORM), each a transaction of its own: through the ORM they cost ten times the CPU.
_SUBSCRIPTION = "SELECT url, secret FROM webhook WHERE id = $1 AND enabled"
_HEADS = (
    "SELECT id, webhook_id, organization_id, attempts, next_attempt_at, event_id FROM webhook_delivery"
    " WHERE webhook_id = $1 AND status = 'pending' AND id > $2 ORDER BY id LIMIT $3"
)
_EVENTS = (
    "SELECT id, event_type, created_at, organization_id, payload::text FROM outbox_event"
    " WHERE id = ANY($1::bigint[])"
)
_DUE = (
    "SELECT EXISTS (SELECT FROM webhook_delivery"
    " WHERE webhook_id = $1 AND status = 'pending' AND next_attempt_at <= now())"
)
#: A run of successful sends stored in one statement: the rows travel as arrays, and each
#: delivery's log gets its attempt appended by the server.
_SUCCEEDED = """
    UPDATE webhook_delivery AS d
    SET status = 'succeeded', attempts = d.attempts + 1, response_code = s.code, duration_ms = s.ms,
        error = NULL, delivered_at = s.at,
        log = d.log || jsonb_build_array(jsonb_build_object(
            'attempt', d.attempts + 1, 'at', s.at_text, 'response_code', s.code,
            'duration_ms', s.ms, 'error', NULL))
    FROM unnest($1::bigint[], $2::integer[], $3::integer[], $4::timestamptz[], $5::text[])
        AS s(id, code, ms, at, at_text)
    WHERE d.id = s.id AND d.status = 'pending'
"""


def _at_text(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


class Statements:
    """The senders' reads and writes on one asyncpg connection, one statement at a time."""

    def __init__(self, conn: asyncpg.Connection, mutex: asyncio.Lock | None = None) -> None:
        self.conn = conn
        self.mutex = mutex or asyncio.Lock()

    async def subscription(self, webhook_id: int) -> tuple[str, str] | None:
        """The subscription's URL and secret, None when it is disabled or gone."""
        async with self.mutex:
            row = await self.conn.fetchrow(_SUBSCRIPTION, webhook_id)
        return (row[0], row[1]) if row else None

    async def heads(self, webhook_id: int, after: int = 0) -> list[tuple[Head, bytes]]:
        """The subscription's oldest pending deliveries (due or not) after delivery `after`, in
        order, with their messages. Deliveries are made in the order their events are published
        (one relay at a time per organization), so delivery-id order is publication order; reading
        on from the last one sent never walks the index entries of those sent before (dead until
        a vacuum: a queue read from its start slows down as it is used). A message made already in
        this process is not read again (the relay makes them as it fans out, and ten subscribers
        share one); the others are read in one query, and kept for the other subscribers."""
        async with self.mutex:
            heads = [Head(*row) for row in await self.conn.fetch(_HEADS, webhook_id, after, HEADS)]
            bodies = {
                h.event_id: body
                for h in heads
                if (body := _made.get(h.event_id) or _read.get(h.event_id)) is not None
            }
            missing = [h.event_id for h in heads if h.event_id not in bodies]
            if missing:
                for row in await self.conn.fetch(_EVENTS, missing):
                    bodies[row[0]] = _body(row[0], row[1], row[2], row[3], orjson.loads(row[4]))
                    _keep(_read, row[0], bodies[row[0]])
        return [(head, bodies[head.event_id]) for head in heads]

    async def has_due(self, webhook_id: int) -> bool:
        """Whether the subscription has a delivery due now."""
        async with self.mutex:
            return bool(await self.conn.fetchval(_DUE, webhook_id))

    async def record_successes(self, done: list[tuple[Head, int, int, datetime]]) -> None:
        """Store a run of successful sends (one statement), and forget them."""
        if not done:
            return
        async with self.mutex:
            await self.conn.execute(
                _SUCCEEDED,
                [d.id for d, _, _, _ in done],
                [code for _, code, _, _ in done],
                [ms for _, _, ms, _ in done],
                [at for _, _, _, at in done],
                [_at_text(at) for _, _, _, at in done],
            )
        done.clear()

    async def try_lock(self, webhook_id: int) -> bool:
        """The subscription's advisory lock, held by this connection's session until `unlock`."""
        async with self.mutex:
            return bool(
                await self.conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", LOCK_CLASS, webhook_id)
            )

    async def unlock(self, webhook_id: int) -> None:
        async with self.mutex:
            await self.conn.fetchval("SELECT pg_advisory_unlock($1, $2)", LOCK_CLASS, webhook_id)


@asynccontextmanager
async def _connection(maker: async_sessionmaker[AsyncSession]) -> AsyncIterator[Statements]:
    """Statements on a connection of the maker's pool, kept for the block (bound to a connection,
    as in tests: on that connection).

    For the block, each statement is planned for its own arguments (`plan_cache_mode`): the
    senders run the same few statements thousands of times on one connection, and a generic plan
    made early — while the delivery table was small or had no statistics yet — would be kept
    however the table grew (joining a batch's arrays by scanning the whole table, for one). And
    the successes it records do not wait for their WAL flush (`synchronous_commit`): a database
    server that crashes may forget the last of them (a fraction of a second), which are then sent
    again with their same `webhook-id` — delivery is at least once either way. Only these
    statements run so: the relay's fan-out, which makes the ids, is committed durably."""
    bind = maker.kw["bind"]
    async with AsyncExitStack() as stack:
        conn = bind if isinstance(bind, AsyncConnection) else await stack.enter_async_context(bind.connect())
        raw = cast(asyncpg.Connection, (await conn.get_raw_connection()).driver_connection)
        await raw.execute("SET plan_cache_mode = force_custom_plan; SET synchronous_commit = off")
        try:
            yield Statements(raw)
        finally:
            if not raw.is_closed():
                with contextlib.suppress(asyncpg.PostgresError, OSError):
                    await raw.execute("RESET plan_cache_mode; RESET synchronous_commit")


@asynccontextmanager
async def _held(maker: async_sessionmaker[AsyncSession], webhook_id: int) -> AsyncIterator[Statements | None]:
    """Try the subscription's advisory lock on a dedicated connection; its statements while held,
    None when another run holds it."""
    async with _connection(maker) as statements:
        if not await statements.try_lock(webhook_id):
            yield None
            return
        try:
            yield statements
        finally:
            await statements.unlock(webhook_id)


async def has_due(maker: async_sessionmaker[AsyncSession], webhook_id: int) -> bool:
    """Whether the subscription has a delivery due now."""
    async with _connection(maker) as statements:
        return await statements.has_due(webhook_id)


async def _record(
    maker: async_sessionmaker[AsyncSession],
    delivery: Head,
    code: int | None,
    duration_ms: int,
    error: str | None,
) -> float | None:
    """Store one attempt; returns the delay before the next one (None: none, or the last failed)."""
    now = datetime.now(UTC)
    attempt = delivery.attempts + 1
    entry = {
        "attempt": attempt,
        "at": _at_text(now),
        "response_code": code,
        "duration_ms": duration_ms,
        "error": error,
    }
    values: dict[str, Any] = {
        "attempts": attempt,
        "response_code": code,
        "duration_ms": duration_ms,
        "error": error,
        "log": WebhookDelivery.log.op("||")(bindparam(None, [entry], type_=JSONB)),
    }
    delay: float | None = None
    if error is None:
        values.update(status="succeeded", delivered_at=now)
    else:
        delay = retry_delay(attempt)
        if delay is None:
            values["status"] = "failed"
        else:
            values["next_attempt_at"] = now + timedelta(seconds=delay)
    async with session_scope(maker) as session:
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery.id, WebhookDelivery.status == "pending")
            .values(**values)
        )
        if error is not None and delay is None:
            await _disable(session, delivery.webhook_id, delivery.organization_id, error)
    return delay


async def _disable(session: AsyncSession, webhook_id: int, organization_id: int, error: str) -> None:
    reason = f"Disabled after {len(get_settings().webhook_retry_delay_list) + 1} failed attempts: {error}"
    url = await session.scalar(
        update(Webhook)
        .where(Webhook.id == webhook_id)
        .values(enabled=False, disabled_reason=reason[:1000], version=Webhook.version + 1)
        .returning(Webhook.url)
    )
    await notify_users(
        session,
        organization_id=organization_id,
        user_ids=await organization_admin_ids(session, organization_id),
        kind="webhook_disabled",
        title="A webhook was disabled",
        body=f"{url}: {reason}",
        entity_type="webhook",
        entity_id=webhook_id,
        data={"webhook_id": webhook_id},
    )
    log.warning("webhook_disabled", webhook_id=webhook_id, reason=reason)


async def deliver_pending(
    maker: async_sessionmaker[AsyncSession], webhook_id: int, client: Poster | None = None
) -> RunResult:
    """Send the subscription's due deliveries in event order (see the module docstring)."""
    result = RunResult()
    for _ in range(3):
        async with _held(maker, webhook_id) as statements:
            if statements is None:
                result.busy = True
                return result
            found = await statements.subscription(webhook_id)
            if found is None:
                return result
            url, secret = found
            result.after = 0
            await _run(maker, statements, webhook_id, url, secret, client or shared_client(), result)
        if result.more or result.retry_in is not None or not await has_due(maker, webhook_id):
            break
        # A run that found the lock taken while this one was finishing left its work to this one.
    return result


async def _run(
    maker: async_sessionmaker[AsyncSession],
    statements: Statements,
    webhook_id: int,
    url: str,
    secret: str,
    client: Poster,
    result: RunResult,
    stopping: Callable[[], bool] = lambda: False,
) -> None:
    started = time.monotonic()
    done: list[tuple[Head, int, int, datetime]] = []
    try:
        while True:
            heads = await statements.heads(webhook_id, result.after)
            for head, body in heads:
                if (
                    result.sent + result.failed >= MAX_PER_RUN
                    or time.monotonic() - started > MAX_RUN_SECONDS
                    or stopping()
                ):
                    result.more = True
                    return
                wait = (head.next_attempt_at - datetime.now(UTC)).total_seconds()
                if wait > 0:
                    result.retry_in = wait
                    return
                code, ms, error = await send_one(client, url, secret, head.id, body)
                if error is None and code is not None:
                    result.sent += 1
                    result.after = head.id
                    done.append((head, code, ms, datetime.now(UTC)))
                    if len(done) >= FLUSH_EVERY:
                        await statements.record_successes(done)
                    continue
                await statements.record_successes(done)
                result.failed += 1
                result.retry_in = await _record(maker, head, code, ms, error)
                return
            await statements.record_successes(done)  # before the next read sees them pending
            if len(heads) < HEADS:
                # All that was pending is sent; what is added later comes with a wake-up (or the
                # check made after the lock is let go).
                return
    finally:
        await statements.record_successes(done)


class SharedLocks:
    """The subscriptions' advisory locks of one process, all held on one connection of their own
    (dropped with it if the process dies), so many subscriptions are served at once without a
    connection each; the senders' statements run on it too."""

    def __init__(self, maker: async_sessionmaker[AsyncSession]) -> None:
        self.maker = maker
        self.held: set[int] = set()
        self._statements: Statements | None = None
        self._opening = asyncio.Lock()
        self._stack = AsyncExitStack()

    async def statements(self) -> Statements:
        async with self._opening:
            if self._statements is None:
                self._statements = await self._stack.enter_async_context(_connection(self.maker))
            return self._statements

    async def try_lock(self, webhook_id: int) -> bool:
        if webhook_id in self.held:
            return False
        locked = await (await self.statements()).try_lock(webhook_id)
        if locked:
            self.held.add(webhook_id)
        return locked

    async def unlock(self, webhook_id: int) -> None:
        if webhook_id in self.held:
            self.held.discard(webhook_id)
            await (await self.statements()).unlock(webhook_id)

    async def close(self) -> None:
        for webhook_id in sorted(self.held):
            await self.unlock(webhook_id)
        self._statements = None
        await self._stack.aclose()


#: A subscription served by the relay is let go after this long without new deliveries.
IDLE_SECONDS = 1.0
#: Its URL and secret are read again at most this often (a change applies within this time).
SUBSCRIPTION_TTL = 1.0


class Senders:
    """Deliveries sent by the relay's own process as soon as it has published them: one sender
    per subscription (its lock held while it has work, a run at a time, in event order), woken by
    each relay pass, so no job is queued per event or subscription. A slow or failing subscriber
    only holds up its own sender. A subscription whose lock another process holds is left to it
    (that run checks for due deliveries after letting go); a retry is handed to `on_retry` (its own
    job) at once, and the subscription is not woken again before it is due."""

    def __init__(
        self,
        maker: async_sessionmaker[AsyncSession],
        client: Poster | None = None,
        on_retry: Callable[[int, float], Awaitable[None]] | None = None,
    ) -> None:
        self.maker = maker
        self.client = client
        self.on_retry = on_retry
        self.retry_at: dict[int, float] = {}
        self.locks = SharedLocks(maker)
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.wakes: dict[int, asyncio.Event] = {}
        self.stopping = False
        #: Subscriptions to hand to their own delivery job (a retry, work left when stopping).
        self.retries: dict[int, float] = {}
        self.leftover: set[int] = set()
        #: Subscriptions stopped with deliveries still due because the run was stopping (time up).
        self.unfinished: set[int] = set()
        self.sent = 0

    @property
    def busy(self) -> bool:
        return any(not task.done() for task in self.tasks.values())

    def wake(self, webhook_ids: set[int]) -> None:
        now = time.monotonic()
        for webhook_id in sorted(webhook_ids):
            if self.retry_at.get(webhook_id, 0.0) > now:
                continue  # its next attempt is scheduled; later events wait behind it
            task = self.tasks.get(webhook_id)
            if task is not None and not task.done():
                self.wakes[webhook_id].set()
                continue
            self.wakes[webhook_id] = asyncio.Event()
            self.tasks[webhook_id] = asyncio.create_task(self._serve(webhook_id))

    async def _serve(self, webhook_id: int) -> None:
        try:
            if not await self.locks.try_lock(webhook_id):
                return
            await self._loop(webhook_id)
        except Exception:
            log.exception("webhook_sender_failed", webhook_id=webhook_id)
            self.leftover.add(webhook_id)
        finally:
            await self.locks.unlock(webhook_id)
        retry_pending = self.retry_at.get(webhook_id, 0.0) > time.monotonic()
        if not retry_pending and await (await self.locks.statements()).has_due(webhook_id):
            if self.stopping and webhook_id not in self.leftover:
                self.unfinished.add(webhook_id)
            else:
                self.leftover.add(webhook_id)

    async def _loop(self, webhook_id: int) -> None:
        wake = self.wakes[webhook_id]
        statements = await self.locks.statements()
        found: tuple[str, str] | None = None
        read_at = 0.0
        after = 0
        while not self.stopping:
            wake.clear()
            if found is None or time.monotonic() - read_at > SUBSCRIPTION_TTL:
                found, read_at = await statements.subscription(webhook_id), time.monotonic()
                if found is None:
                    return
                # From the start again now and then: a delivery put back behind the last one sent
                # (a redelivery, a test ping committed late) is sent within this time.
                after = 0
            result = RunResult(after=after)
            await _run(
                self.maker,
                statements,
                webhook_id,
                *found,
                self.client or shared_client(),
                result,
                lambda: self.stopping,
            )
            self.sent += result.sent
            after = result.after
            if result.retry_in is not None:
                self.retry_at[webhook_id] = time.monotonic() + result.retry_in
                if self.on_retry is not None:
                    await self.on_retry(webhook_id, result.retry_in)
                else:
                    self.retries[webhook_id] = result.retry_in
                return
            if result.more:
                continue
            try:
                await asyncio.wait_for(wake.wait(), IDLE_SECONDS)
            except TimeoutError:
                return

    async def stop(self) -> None:
        """Let every sender finish its current message, then let go of the locks."""
        self.stopping = True
        for event in self.wakes.values():
            event.set()
        if self.tasks:
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        await self.locks.close()


_clients: dict[int, Poster] = {}


def shared_client() -> Poster:
    """One poster per event loop (a worker process): making one per run (its TLS context, its
    connections) would cost more than the deliveries themselves. Every request's URL is checked
    and its connection pinned to the address that was checked (no DNS rebinding in between)."""
    loop_id = id(asyncio.get_running_loop())
    client = _clients.get(loop_id)
    if client is None:
        client = _clients[loop_id] = Poster()
    return client


async def due_webhooks(session: AsyncSession) -> list[int]:
    """Enabled subscriptions with a delivery due now (for the beat sweep)."""
    now = datetime.now(UTC)
    rows = await session.scalars(
        select(WebhookDelivery.webhook_id)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= now,
            Webhook.enabled.is_(True),
        )
        .distinct()
    )
    return list(rows)
