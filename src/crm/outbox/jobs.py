"""Celery jobs: the outbox relay (woken after each commit that wrote events, and swept by beat).

The relay job keeps running while events keep coming: each pass publishes what was committed
before it started and hands the new deliveries to senders in the same process (`Senders`), then
waits for the next commit's wake-up (a Redis flag polled every `POLL_SECONDS`). So a steady stream
of writes costs one job per `RUN_SECONDS`, not one job per commit and subscription, and an event
reaches its subscribers one relay pass after its commit.

The senders of one process top out at about one CPU core. With `WEBHOOK_SENDER_PROCESSES` above
1, the subscriptions are shared out by id: the relay's process sends share 0, and hands the others'
subscriptions to a `webhooks.send` job per share (woken the same way, with the ids to look at), so
delivery spreads over as many worker processes."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.config import get_settings
from crm.outbox import consumers as _consumers  # noqa: F401  (registers the consumers)
from crm.outbox.queue import Wakeup, clear
from crm.outbox.relay import purge_published, relay
from crm.outbox.service import RELAY
from crm.webhooks.delivery import Senders, due_webhooks
from crm.webhooks.jobs import queue_delivery, queue_retry
from crm.worker.app import celery_app
from crm.worker.runtime import job_session, run_async, sessionmaker

#: How often a running relay looks for a wake-up, how long it waits for one with nothing to do,
#: and how long one job runs before handing over to a fresh one.
POLL_SECONDS = 0.05
LINGER_SECONDS = 1.0
RUN_SECONDS = 30.0


async def _retry(webhook_id: int, delay: float) -> None:
    await asyncio.to_thread(queue_retry, webhook_id, delay)


def share_of(webhook_id: int) -> int:
    """The sender process that serves a subscription (`WEBHOOK_SENDER_PROCESSES` shares; share 0
    is the relay's own process)."""
    return webhook_id % get_settings().webhook_sender_processes


def sender_wakeup(share: int) -> Wakeup:
    return Wakeup(f"crm:webhooks:senders:{share}")


def _hand_to_shares(webhook_ids: set[int]) -> None:
    """Wake the sender processes of other shares for their subscriptions (blocking)."""
    by_share: dict[int, set[int]] = {}
    for webhook_id in webhook_ids:
        by_share.setdefault(share_of(webhook_id), set()).add(webhook_id)
    for share, ids in sorted(by_share.items()):
        sender_wakeup(share).notify(functools.partial(send_webhooks.apply_async, args=[share]), ids)


async def _wake(senders: Senders, webhook_ids: set[int]) -> None:
    """The relay's own share is sent from its process; the others are handed to theirs."""
    own = {webhook_id for webhook_id in webhook_ids if share_of(webhook_id) == 0}
    senders.wake(own)
    if others := webhook_ids - own:
        await asyncio.to_thread(_hand_to_shares, others)


async def run_relay(
    maker: async_sessionmaker[AsyncSession],
    *,
    run_seconds: float = RUN_SECONDS,
    senders: Senders | None = None,
) -> int:
    """Relay and send until no wake-up came for `LINGER_SECONDS` (or `run_seconds` passed)."""
    senders = senders or Senders(maker, on_retry=_retry)

    async def start() -> None:
        async with maker() as session:
            await _wake(senders, set(await due_webhooks(session)))

    async def one_pass(_: set[int]) -> int:
        result = await relay(maker)
        await _wake(senders, result.webhooks)
        return result.events

    return await _keep_running(RELAY, relay_outbox.apply_async, senders, start, one_pass, run_seconds)


async def run_senders(
    maker: async_sessionmaker[AsyncSession],
    share: int,
    *,
    run_seconds: float = RUN_SECONDS,
    senders: Senders | None = None,
) -> int:
    """Send one share's deliveries as the relay hands its subscriptions over, until none came for
    `LINGER_SECONDS` (or `run_seconds` passed); the number of deliveries sent."""
    senders = senders or Senders(maker, on_retry=_retry)

    async def start() -> None:
        async with maker() as session:
            senders.wake({w for w in await due_webhooks(session) if share_of(w) == share})

    async def one_pass(webhook_ids: set[int]) -> int:
        senders.wake({w for w in webhook_ids if share_of(w) == share})
        return 0

    again = functools.partial(send_webhooks.apply_async, args=[share])
    await _keep_running(sender_wakeup(share), again, senders, start, one_pass, run_seconds)
    return senders.sent


async def _keep_running(
    wakeup: Wakeup,
    again: Callable[[], object],
    senders: Senders,
    start: Callable[[], Awaitable[None]],
    one_pass: Callable[[set[int]], Awaitable[int]],
    run_seconds: float,
) -> int:
    """A pass per wake-up (`one_pass` with the ids it came with) while senders send, until no
    wake-up came for `LINGER_SECONDS` or `run_seconds` passed (then `again` queues a fresh job)."""
    started = time.monotonic()
    done = 0
    released = failed = False
    try:
        # Deliveries a previous run left (its process killed midway) are taken up first.
        await start()
        while True:
            done += await one_pass(await asyncio.to_thread(wakeup.take))
            if time.monotonic() - started > run_seconds:
                break
            idle_until = time.monotonic() + LINGER_SECONDS
            woken = False
            while time.monotonic() < idle_until or senders.busy:
                await asyncio.sleep(POLL_SECONDS)
                if await asyncio.to_thread(wakeup.waiting):
                    woken = True
                    break
                if time.monotonic() - started > run_seconds:
                    break
            if woken:
                continue
            if not await asyncio.to_thread(wakeup.release):
                released = True
                break
    except Exception:
        await asyncio.to_thread(clear, wakeup.queued)  # the next commit queues a job again
        failed = True
        raise
    finally:
        await senders.stop()
        if failed:  # no fresh job follows: each subscription left with work gets its own job
            senders.leftover |= senders.unfinished
        for webhook_id, delay in senders.retries.items():
            await asyncio.to_thread(queue_retry, webhook_id, delay)
        for webhook_id in sorted(senders.leftover):
            await asyncio.to_thread(queue_delivery, webhook_id)
    # Time is up: a fresh job carries on when work is waiting or a sender had to stop with
    # deliveries due. It takes up every subscription with deliveries due as it starts, so they stay
    # with the senders of one process (a job per subscription would contend with them for locks).
    if not released and await asyncio.to_thread(wakeup.release):
        await asyncio.to_thread(_hand_over, wakeup, again)
    elif senders.unfinished:
        await asyncio.to_thread(wakeup.notify, again)
    return done


def _hand_over(wakeup: Wakeup, again: Callable[[], object]) -> None:
    try:
        again()
    except Exception:
        clear(wakeup.queued)


@celery_app.task(name="outbox.relay", acks_late=True, soft_time_limit=120, time_limit=150)
def relay_outbox() -> int:
    """Publish unpublished events and send their deliveries (safe to run twice: per-organization
    locks, unique deliveries, one sender per subscription)."""
    return run_async(run_relay(sessionmaker()))


@celery_app.task(name="webhooks.send", acks_late=True, soft_time_limit=120, time_limit=150)
def send_webhooks(share: int) -> int:
    """Send the deliveries of one share of the subscriptions, handed over by the relay (safe to
    run twice: one sender per subscription)."""
    return run_async(run_senders(sessionmaker(), share))


async def _sweep() -> int:
    result = await relay(sessionmaker())
    for webhook_id in sorted(result.webhooks):
        await asyncio.to_thread(queue_delivery, webhook_id)
    async with job_session() as session:
        await purge_published(session)
    return result.events


@celery_app.task(name="outbox.sweep", acks_late=True, soft_time_limit=120, time_limit=150)
def sweep_outbox() -> int:
    """Beat: relay whatever a lost wake-up left behind; drop events published 30 days ago."""
    return run_async(_sweep())
