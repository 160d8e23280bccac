"""A real Celery worker relays and delivers; its pool process is killed mid-delivery: every event
still arrives, in order, with no duplicate delivery rows (a message cut off mid-flight may arrive
again with the same `webhook-id`, which is what receivers deduplicate on)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import select, text

from crm.models import WebhookDelivery
from crm.webhooks.delivery import FLUSH_EVERY
from tests.factories import committed_owner
from tests.fakes.webhook_receiver import Receiver
from tests.workers import celery_worker

EVENTS = 12


def pool_children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


async def wait_for(predicate: Any, limit: float, what: str, log: Any) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{log()}")
        await asyncio.sleep(0.05)


async def test_worker_killed_mid_delivery_loses_and_duplicates_nothing(
    app: Any, committing_client: AsyncClient, settings: Any, tmp_path: Path, receiver: Receiver
) -> None:
    owner = await committed_owner(app.state.sessionmaker, committing_client)
    hook = await committing_client.post(
        "/api/v1/webhooks", json={"url": receiver.url("kill"), "events": ["contact.*"]}, headers=owner.headers
    )
    assert hook.status_code == 201
    receiver.delays["/hooks/kill"] = 0.25

    with celery_worker(settings, tmp_path, name="webhooks-kill") as worker:
        for n in range(EVENTS):
            created = await committing_client.post(
                "/api/v1/contacts", json={"full_name": f"Contact {n:02d}"}, headers=owner.headers
            )
            assert created.status_code == 201
        await wait_for(lambda: len(receiver.received("kill")) >= 3, 60, "the first deliveries", worker.log)
        children = pool_children(worker.process.pid)
        assert children, worker.log()
        for child in children:
            os.kill(child, signal.SIGKILL)

        def all_ids() -> set[str]:
            return {r.headers["webhook-id"] for r in receiver.received("kill")}

        await wait_for(lambda: len(all_ids()) >= EVENTS, 90, "every event after the kill", worker.log)
        await asyncio.sleep(1.0)
        async with app.state.engine.connect() as conn:  # each tier names its connections
            names = set(
                (
                    await conn.scalars(
                        text(
                            "SELECT application_name FROM pg_stat_activity"
                            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                        )
                    )
                ).all()
            )
            own = await conn.scalar(text("SELECT current_setting('application_name')"))
        assert own == "crm-api"
        assert "crm-worker" in names, names

    got = receiver.received("kill")
    first_seen: list[str] = []
    for r in got:
        name = r.json()["data"]["object"]["full_name"]
        if name not in first_seen:
            first_seen.append(name)
    assert first_seen == [f"Contact {n:02d}" for n in range(EVENTS)]
    # Resent after the kill: at most the sends not yet recorded, each with its same webhook-id.
    assert len({r.headers["webhook-id"] for r in got}) == EVENTS
    assert len(got) - EVENTS <= FLUSH_EVERY
    async with app.state.sessionmaker() as session:
        rows = (await session.scalars(select(WebhookDelivery))).all()
    assert len(rows) == EVENTS
    assert {r.status for r in rows} == {"succeeded"}


async def test_sender_processes_killed_mid_delivery_lose_and_duplicate_nothing(
    app: Any,
    committing_client: AsyncClient,
    settings: Any,
    tmp_path: Path,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two sender processes (the relay's, sending even subscription ids, and a `webhooks.send` job
    for the odd ones), every pool process killed mid-delivery: each subscriber still gets every
    event, in order, at most the unrecorded sends twice (with their same `webhook-id`)."""
    owner = await committed_owner(app.state.sessionmaker, committing_client)
    names = ("share-a", "share-b")
    ids = []
    for name in names:
        body = {"url": receiver.url(name), "events": ["contact.*"]}
        hook = await committing_client.post("/api/v1/webhooks", json=body, headers=owner.headers)
        assert hook.status_code == 201
        ids.append(hook.json()["id"])
        receiver.delays[f"/hooks/{name}"] = 0.25
    assert {webhook_id % 2 for webhook_id in ids} == {0, 1}
    monkeypatch.setenv("WEBHOOK_SENDER_PROCESSES", "2")

    with celery_worker(settings, tmp_path, name="webhooks-shares", concurrency=3) as worker:
        for n in range(EVENTS):
            created = await committing_client.post(
                "/api/v1/contacts", json={"full_name": f"Contact {n:02d}"}, headers=owner.headers
            )
            assert created.status_code == 201

        def started() -> bool:
            return all(len(receiver.received(name)) >= 3 for name in names)

        await wait_for(started, 60, "the first deliveries of both shares", worker.log)
        assert "webhooks.send" in worker.log()  # the odd share runs in a job of its own
        for child in pool_children(worker.process.pid):
            os.kill(child, signal.SIGKILL)

        def complete() -> bool:
            return all(
                len({r.headers["webhook-id"] for r in receiver.received(name)}) >= EVENTS for name in names
            )

        await wait_for(complete, 120, "every event of both shares after the kill", worker.log)

    for name in names:
        got = receiver.received(name)
        first_seen: list[str] = []
        for r in got:
            full_name = r.json()["data"]["object"]["full_name"]
            if full_name not in first_seen:
                first_seen.append(full_name)
        assert first_seen == [f"Contact {n:02d}" for n in range(EVENTS)], name
        assert len({r.headers["webhook-id"] for r in got}) == EVENTS
        assert len(got) - EVENTS <= FLUSH_EVERY
    async with app.state.sessionmaker() as session:
        rows = (await session.execute(select(WebhookDelivery.webhook_id, WebhookDelivery.status))).all()
    assert sorted(rows) == sorted((webhook_id, "succeeded") for webhook_id in ids for _ in range(EVENTS))
