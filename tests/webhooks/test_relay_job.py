"""The relay job as the worker runs it: it keeps running while events come, sends each event to
every subscriber from its own process within a second of the commit, and stops by itself when idle;
and the wake-up flags it runs on, against the real Redis."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from httpx import AsyncClient
from sqlalchemy import select

from crm.models import WebhookDelivery
from crm.outbox.jobs import run_relay, run_senders, sender_wakeup
from crm.outbox.queue import Wakeup, _redis
from crm.outbox.relay import relay
from crm.outbox.service import RELAY, emit
from crm.webhooks.delivery import Senders
from tests.factories import committed_owner
from tests.fakes.webhook_receiver import Receiver


def test_wakeup_queues_one_job_and_never_loses_a_commit(settings: Any) -> None:
    wakeup = Wakeup("crm:test:wakeup")
    _redis().delete(wakeup.dirty, wakeup.queued)
    sent: list[int] = []
    assert wakeup.notify(lambda: sent.append(1))
    assert not wakeup.notify(lambda: sent.append(2))  # queued already: no second job
    assert sent == [1]
    wakeup.take()  # the job's first pass starts
    assert not wakeup.waiting()
    assert not wakeup.notify(lambda: sent.append(3))  # running: marked, not queued
    assert wakeup.waiting()
    assert wakeup.release()  # work came in meanwhile: the job carries on
    wakeup.take()
    assert not wakeup.release()  # nothing new: it stops
    assert wakeup.notify(lambda: sent.append(4))  # the next commit queues a job again
    assert sent == [1, 4]

    def broken() -> None:
        raise ConnectionError("broker away")

    _redis().delete(wakeup.dirty, wakeup.queued)
    assert not wakeup.notify(broken)  # not sent: the next commit tries again
    assert wakeup.notify(lambda: sent.append(5))
    assert sent == [1, 4, 5]


async def test_the_relay_job_sends_while_events_come_then_stops(
    app: Any, committing_client: AsyncClient, receiver: Receiver
) -> None:
    owner = await committed_owner(app.state.sessionmaker, committing_client)
    for name in ("loop-a", "loop-b"):
        hook = await committing_client.post(
            "/api/v1/webhooks",
            json={"url": receiver.url(name), "events": ["contact.*"]},
            headers=owner.headers,
        )
        assert hook.status_code == 201
    _redis().delete(RELAY.dirty, RELAY.queued)
    job = asyncio.create_task(run_relay(app.state.sessionmaker))

    committed: list[float] = []
    for n in range(6):
        created = await committing_client.post(
            "/api/v1/contacts", json={"full_name": f"Contact {n}"}, headers=owner.headers
        )
        assert created.status_code == 201
        committed.append(time.monotonic())
        await asyncio.sleep(0.2)
    for _ in range(500):  # up to 10 s
        if len(receiver.requests) >= 12:
            break
        await asyncio.sleep(0.02)
    arrived = time.monotonic()
    for name in ("loop-a", "loop-b"):
        got = [r.json()["data"]["object"]["full_name"] for r in receiver.received(name)]
        assert got == [f"Contact {n}" for n in range(6)]
    assert arrived - committed[-1] < 2.0  # the last one arrived within two seconds of its commit
    assert not job.done()  # still running, waiting for more

    assert await asyncio.wait_for(job, 15) == 6  # idle: it stops by itself
    assert not _redis().exists(RELAY.queued)  # and the next commit queues a job again
    async with app.state.sessionmaker() as session:
        statuses = (await session.scalars(select(WebhookDelivery.status))).all()
    assert sorted(statuses) == ["succeeded"] * 12
    assert len(receiver.requests) == 12


async def test_a_failing_subscriber_goes_to_its_retry_and_holds_up_no_one(
    app: Any, committing_client: AsyncClient, receiver: Receiver
) -> None:
    owner = await committed_owner(app.state.sessionmaker, committing_client)
    ids = {}
    for name in ("steady", "flaky"):
        hook = await committing_client.post(
            "/api/v1/webhooks",
            json={"url": receiver.url(name), "events": ["contact.*"]},
            headers=owner.headers,
        )
        ids[name] = hook.json()["id"]
    receiver.script("flaky", 500)
    for n in range(2):
        created = await committing_client.post(
            "/api/v1/contacts", json={"full_name": f"Contact {n}"}, headers=owner.headers
        )
        assert created.status_code == 201
    retries: list[tuple[int, float]] = []

    async def on_retry(webhook_id: int, delay: float) -> None:
        retries.append((webhook_id, delay))

    maker = app.state.sessionmaker
    senders = Senders(maker, on_retry=on_retry)
    try:
        senders.wake((await relay(maker)).webhooks)
        for _ in range(250):
            if len(receiver.received("steady")) == 2 and retries:
                break
            await asyncio.sleep(0.02)
        assert len(receiver.received("steady")) == 2
        assert len(receiver.received("flaky")) == 1  # the second event waits behind the failed first
        ((webhook_id, delay),) = retries
        assert webhook_id == ids["flaky"]
        assert 8 <= delay <= 12  # 10 s ± 20 %
        senders.wake({ids["flaky"]})  # more events: not tried again before its retry is due
        await asyncio.sleep(0.3)
        assert len(receiver.received("flaky")) == 1
    finally:
        await senders.stop()
    async with maker() as session:
        rows = (
            await session.execute(
                select(WebhookDelivery.status, WebhookDelivery.attempts, WebhookDelivery.error)
                .where(WebhookDelivery.webhook_id == ids["flaky"])
                .order_by(WebhookDelivery.event_id)
            )
        ).all()
    assert [tuple(r) for r in rows] == [("pending", 1, "HTTP 500"), ("pending", 0, None)]


async def test_an_event_committed_after_later_ones_were_sent_is_sent_once_after_them(
    app: Any, committing_client: AsyncClient, receiver: Receiver
) -> None:
    """Event ids are taken before commit, so a long transaction's event can be published after
    later ones were sent. The sender reads on from the last delivery it sent (delivery ids follow
    publication): the late event is not skipped, and comes after them."""
    owner = await committed_owner(app.state.sessionmaker, committing_client)
    hook = await committing_client.post(
        "/api/v1/webhooks", json={"url": receiver.url("late"), "events": ["contact.*"]}, headers=owner.headers
    )
    assert hook.status_code == 201
    maker = app.state.sessionmaker
    senders = Senders(maker)
    try:
        async with maker() as slow:  # a transaction that takes its event id now, commits later
            assert owner.org_id is not None
            late = {"note": "late"}
            emit(slow, owner.org_id, "contact.updated", entity_type="contact", entity_id=1, data=late)
            await slow.flush()
            for n in range(2):
                created = await committing_client.post(
                    "/api/v1/contacts", json={"full_name": f"On time {n}"}, headers=owner.headers
                )
                assert created.status_code == 201
            senders.wake((await relay(maker)).webhooks)
            for _ in range(250):
                if len(receiver.received("late")) == 2:
                    break
                await asyncio.sleep(0.02)
            await slow.commit()
        senders.wake((await relay(maker)).webhooks)  # the sender is still running: reads on
        for _ in range(250):
            if len(receiver.received("late")) == 3:
                break
            await asyncio.sleep(0.02)
    finally:
        await senders.stop()
    got = [r.json() for r in receiver.received("late")]
    assert [m["data"].get("note") or m["data"]["object"]["full_name"] for m in got] == [
        "On time 0",
        "On time 1",
        "late",
    ]
    assert int(got[2]["id"].removeprefix("evt_")) < int(got[0]["id"].removeprefix("evt_"))
    assert len({r.headers["webhook-id"] for r in receiver.received("late")}) == 3
    async with maker() as session:
        statuses = (
            await session.scalars(
                select(WebhookDelivery.status).where(WebhookDelivery.webhook_id == hook.json()["id"])
            )
        ).all()
    assert statuses == ["succeeded"] * 3


async def test_a_relay_out_of_time_leaves_its_unfinished_senders_to_a_fresh_relay(
    app: Any, committing_client: AsyncClient, receiver: Receiver
) -> None:
    """A relay job runs for a bounded time. Subscriptions it had to stop with deliveries due go to
    the fresh relay job it queues (which takes them up first), not to a job per subscription that
    would then contend with the fresh relay's senders for their locks."""
    owner = await committed_owner(app.state.sessionmaker, committing_client)
    hook = await committing_client.post(
        "/api/v1/webhooks", json={"url": receiver.url("slow"), "events": ["contact.*"]}, headers=owner.headers
    )
    hook_id = hook.json()["id"]
    receiver.delays["/hooks/slow"] = 0.2
    for n in range(6):
        created = await committing_client.post(
            "/api/v1/contacts", json={"full_name": f"Contact {n}"}, headers=owner.headers
        )
        assert created.status_code == 201
    per_subscription = f"crm:webhooks:{hook_id}:queued"
    _redis().delete(RELAY.dirty, RELAY.queued, per_subscription)

    assert await run_relay(app.state.sessionmaker, run_seconds=0.3) == 6
    sent_first = len(receiver.received("slow"))
    assert 1 <= sent_first < 6
    assert _redis().exists(RELAY.queued)  # a fresh relay job is queued
    assert not _redis().exists(per_subscription)  # and no job of the subscription's own

    _redis().delete(RELAY.dirty, RELAY.queued)
    receiver.delays["/hooks/slow"] = 0.0
    assert await run_relay(app.state.sessionmaker, run_seconds=10) == 0  # the fresh relay
    got = [r.json()["data"]["object"]["full_name"] for r in receiver.received("slow")]
    assert got == [f"Contact {n}" for n in range(6)]
    assert len({r.headers["webhook-id"] for r in receiver.received("slow")}) == 6
    async with app.state.sessionmaker() as session:
        statuses = (
            await session.scalars(select(WebhookDelivery.status).where(WebhookDelivery.webhook_id == hook_id))
        ).all()
    assert statuses == ["succeeded"] * 6


async def test_subscriptions_are_shared_out_between_sender_processes(
    app: Any, committing_client: AsyncClient, receiver: Receiver, override_settings: Any
) -> None:
    """With two sender processes the relay sends its own share (even subscription ids) and hands
    the others to the share-1 job, with their ids: every event still reaches every subscriber once
    and in order, each subscription from its own share's senders only."""
    override_settings(webhook_sender_processes=2)
    owner = await committed_owner(app.state.sessionmaker, committing_client)
    names = [f"share-{n}" for n in range(4)]  # consecutive ids: two of each share
    hooks = {}
    for name in names:
        hook = await committing_client.post(
            "/api/v1/webhooks",
            json={"url": receiver.url(name), "events": ["contact.*"]},
            headers=owner.headers,
        )
        assert hook.status_code == 201
        hooks[name] = hook.json()["id"]
    assert {webhook_id % 2 for webhook_id in hooks.values()} == {0, 1}
    wakeup = sender_wakeup(1)
    _redis().delete(RELAY.dirty, RELAY.queued, wakeup.dirty, wakeup.queued, wakeup.members)
    maker = app.state.sessionmaker
    relay_senders, share_senders = Senders(maker), Senders(maker)
    share_job = asyncio.create_task(run_senders(maker, 1, senders=share_senders))
    for _ in range(500):  # running: the relay wakes it, queues no job
        if _redis().exists(wakeup.queued):
            break
        await asyncio.sleep(0.01)
    relay_job = asyncio.create_task(run_relay(maker, senders=relay_senders))
    for n in range(5):
        created = await committing_client.post(
            "/api/v1/contacts", json={"full_name": f"Contact {n}"}, headers=owner.headers
        )
        assert created.status_code == 201
        await asyncio.sleep(0.1)
    for _ in range(500):  # up to 10 s
        if len(receiver.requests) >= 20:
            break
        await asyncio.sleep(0.02)
    assert await asyncio.wait_for(relay_job, 15) == 5
    sent_by_share = await asyncio.wait_for(share_job, 15)
    for name in names:
        got = [r.json()["data"]["object"]["full_name"] for r in receiver.received(name)]
        assert got == [f"Contact {n}" for n in range(5)], name
    assert len(receiver.requests) == 20
    assert set(relay_senders.tasks) == {hooks[n] for n in names if hooks[n] % 2 == 0}
    assert set(share_senders.tasks) == {hooks[n] for n in names if hooks[n] % 2 == 1}
    assert sent_by_share == relay_senders.sent == 10
    assert not _redis().exists(wakeup.queued, wakeup.members)  # stopped, nothing left for it
    async with maker() as session:
        statuses = (await session.scalars(select(WebhookDelivery.status))).all()
    assert sorted(statuses) == ["succeeded"] * 20


def test_a_wakeup_hands_its_members_to_the_next_pass_once(settings: Any) -> None:
    wakeup = Wakeup("crm:test:members")
    _redis().delete(wakeup.dirty, wakeup.queued, wakeup.members)
    sent: list[int] = []
    assert wakeup.notify(lambda: sent.append(1), {3, 5})
    assert not wakeup.notify(lambda: sent.append(2), {5, 7})  # queued: its ids join the first ones
    assert sent == [1]
    assert wakeup.take() == {3, 5, 7}
    assert wakeup.take() == set()  # each id is handed over once
    wakeup.notify(lambda: sent.append(3), {9})
    assert wakeup.waiting()
    assert wakeup.take() == {9}
    assert not wakeup.waiting()
    assert not wakeup.release()
