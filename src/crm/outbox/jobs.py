"""Celery jobs: the outbox relay (woken after each commit that wrote events, and swept by beat).

The relay job keeps running while events keep coming: each pass publishes what was committed
before it started and hands the new deliveries to senders in the same process (`Senders`), then
waits for the next commit's wake-up (a Redis flag polled every `POLL_SECONDS`). So a steady stream
of writes costs one job per `RUN_SECONDS`, not one job per commit and subscription, and an event
reaches its subscribers one relay pass after its commit."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.outbox import consumers as _consumers  # noqa: F401  (registers the consumers)
from crm.outbox.queue import clear
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


async def run_relay(
    maker: async_sessionmaker[AsyncSession],
    *,
    run_seconds: float = RUN_SECONDS,
    senders: Senders | None = None,
) -> int:
    """Relay and send until no wake-up came for `LINGER_SECONDS` (or `run_seconds` passed)."""
    senders = senders or Senders(maker, on_retry=_retry)
    started = time.monotonic()
    published = 0
    released = failed = False
    try:
        # Deliveries a previous run left (its process killed midway) are taken up first.
        async with maker() as session:
            senders.wake(set(await due_webhooks(session)))
        while True:
            await asyncio.to_thread(RELAY.take)
            result = await relay(maker)
            published += result.events
            senders.wake(result.webhooks)
            if time.monotonic() - started > run_seconds:
                break
            idle_until = time.monotonic() + LINGER_SECONDS
            woken = False
            while time.monotonic() < idle_until or senders.busy:
                await asyncio.sleep(POLL_SECONDS)
                if await asyncio.to_thread(RELAY.waiting):
                    woken = True
                    break
                if time.monotonic() - started > run_seconds:
                    break
            if woken:
                continue
            if not await asyncio.to_thread(RELAY.release):
                released = True
                break
    except Exception:
        await asyncio.to_thread(clear, RELAY.queued)  # the next commit queues a relay again
        failed = True
        raise
    finally:
        await senders.stop()
        if failed:  # no fresh relay follows: each subscription left with work gets its own job
            senders.leftover |= senders.unfinished
        for webhook_id, delay in senders.retries.items():
            await asyncio.to_thread(queue_retry, webhook_id, delay)
        for webhook_id in sorted(senders.leftover):
            await asyncio.to_thread(queue_delivery, webhook_id)
    # Time is up: a fresh job carries on when events are waiting or a sender had to stop with
    # deliveries due. It takes up every subscription with deliveries due as it starts, so they stay
    # with the relay's senders (a job per subscription would contend with them for the locks).
    if not released and await asyncio.to_thread(RELAY.release):
        await asyncio.to_thread(_hand_over)
    elif senders.unfinished:
        await asyncio.to_thread(RELAY.notify, relay_outbox.apply_async)
    return published


def _hand_over() -> None:
    try:
        relay_outbox.apply_async()
    except Exception:
        clear(RELAY.queued)


@celery_app.task(name="outbox.relay", acks_late=True, soft_time_limit=120, time_limit=150)
def relay_outbox() -> int:
    """Publish unpublished events and send their deliveries (safe to run twice: per-organization
    locks, unique deliveries, one sender per subscription)."""
    return run_async(run_relay(sessionmaker()))


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
