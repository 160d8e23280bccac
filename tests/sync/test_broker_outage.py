"""A broker outage with a real worker: Redis (the broker) is shut down without saving while a sync
runs, a sync is started meanwhile, then Redis comes back on the same port.

The worker must survive (same process), the running sync must end `succeeded`, the job started
during the outage must be sent again once the broker is back and end with the source's rows, and a
sync started after the recovery must run as usual."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import select

from crm.config import Settings
from crm.integrations.jobs import requeue_queued_body
from crm.models import Product, SyncJob
from tests.redis_server import RedisServer, app_broker, redis_server
from tests.sync.test_jobs import _committed_admin, _count, _wait_terminal
from tests.workers import Worker, celery_worker

BASE = "/api/v1/admin/sync"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path) as server, app_broker(server.url(1)):
        yield server


@pytest.fixture
def outage_worker(settings: Settings, tmp_path: Path, toy: Path, broker: RedisServer) -> Iterator[Worker]:
    """`celery worker` as `crm worker` runs it (two pool processes; gossip, mingle, events on), on the
    private broker. (With one pool process kombu's failure below does not show.)"""
    private = settings.model_copy(update={"celery_broker_url": broker.url(1)})
    with celery_worker(
        private, tmp_path, name="outage", pythonpath=[toy], like_cli=True, concurrency=2
    ) as worker:
        worker.wait_ready()
        yield worker


async def _job(app: Any, job_id: int) -> SyncJob:
    async with app.state.sessionmaker() as session:
        job = await session.get(SyncJob, job_id)
    assert job is not None
    return job


async def test_the_worker_survives_a_broker_outage_and_jobs_started_meanwhile_run(
    app: Any, committing_client: AsyncClient, broker: RedisServer, outage_worker: Worker
) -> None:
    pid = outage_worker.process.pid
    admin, slow_id = await _committed_admin(
        app,
        committing_client,
        {"products": 40, "stores": 1, "folders": 0, "page_size": 5, "page_delay": 0.4},
    )
    # Another organization's integration, started during the outage.
    other_admin, other_id = await _committed_admin(app, committing_client, {"products": 25, "stores": 1})

    # A sync runs (its message unacknowledged) when the broker goes away.
    running = await committing_client.post(
        f"{BASE}/start",
        json={"integration_id": slow_id, "entities": ["products"]},
        headers=admin.headers,
    )
    assert running.status_code == 202, running.text
    deadline = time.monotonic() + 60
    while await _count(app, Product, admin.org_id) < 5:
        assert time.monotonic() < deadline, outage_worker.log()
        await asyncio.sleep(0.2)
    broker.stop()

    # Started while the broker is away: accepted, stored as queued, never handed to the broker.
    started = await committing_client.post(
        f"{BASE}/start", json={"integration_id": other_id}, headers=other_admin.headers
    )
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "queued"
    waiting_id = started.json()["id"]
    waiting = await _job(app, waiting_id)
    assert (waiting.status, waiting.enqueued_at) == ("queued", None)

    await asyncio.sleep(3)
    assert outage_worker.process.poll() is None, outage_worker.log()
    broker.start()

    # The sync that ran through the outage finishes; the worker is the same process.
    first = await _wait_terminal(app, outage_worker, running.json()["id"])
    assert first.status == "succeeded", (first.error, outage_worker.log())
    assert first.counts["products"]["created"] == 40
    assert first.enqueued_at is not None  # the broker took its message at the start
    assert (await _job(app, waiting_id)).status == "queued"  # its message was never sent

    # The requeue pass (beat's, every minute) sends it again; the worker runs it.
    sent = await requeue_queued_body(datetime.now(UTC) + timedelta(minutes=1), app.state.sessionmaker)
    assert sent == [waiting_id]
    second = await _wait_terminal(app, outage_worker, waiting_id)
    assert second.status == "succeeded", (second.error, outage_worker.log())
    assert second.enqueued_at is not None
    assert second.counts["products"]["created"] == 25
    assert await _count(app, Product, admin.org_id) == 40
    assert await _count(app, Product, other_admin.org_id) == 25
    # A second pass finds nothing left to send.
    assert await requeue_queued_body(datetime.now(UTC) + timedelta(minutes=1), app.state.sessionmaker) == []

    # A sync started after the recovery runs as usual.
    again = await committing_client.post(
        f"{BASE}/start", json={"integration_id": other_id, "full": True}, headers=other_admin.headers
    )
    assert again.status_code == 202, again.text
    third = await _wait_terminal(app, outage_worker, again.json()["id"])
    assert third.status == "succeeded", (third.error, outage_worker.log())
    assert third.counts["products"]["unchanged"] == 25
    body = (await committing_client.get(f"{BASE}/jobs/{third.id}", headers=other_admin.headers)).json()
    assert body["status"] == "succeeded"

    assert outage_worker.process.poll() is None
    assert outage_worker.process.pid == pid
    assert "Unrecoverable error" not in outage_worker.log_path.read_text(errors="replace")
    async with app.state.sessionmaker() as session:
        ids = (
            await session.scalars(
                select(Product.external_id).where(Product.organization_id == other_admin.org_id)
            )
        ).all()
    assert sorted(ids) == sorted(f"p{i}" for i in range(25))


async def test_a_worker_coming_up_sends_jobs_left_unsent(
    app: Any, committing_client: AsyncClient, settings: Settings, tmp_path: Path, toy: Path
) -> None:
    """A job stored while no broker took it is run as soon as a worker starts (no beat needed)."""
    admin, integration_id = await _committed_admin(app, committing_client, {"products": 12, "stores": 1})
    async with app.state.sessionmaker() as session:
        job = SyncJob(
            organization_id=admin.org_id,
            integration_id=integration_id,
            status="queued",
            trigger="manual",
            created_at=datetime.now(UTC) - timedelta(minutes=2),
        )
        session.add(job)
        await session.commit()
        job_id = job.id
    assert (await _job(app, job_id)).enqueued_at is None

    with celery_worker(settings, tmp_path, name="requeue", pythonpath=[toy]) as worker:
        done = await _wait_terminal(app, worker, job_id)

    assert done.status == "succeeded", (done.error, worker.log())
    assert done.enqueued_at is not None
    assert done.counts["products"]["created"] == 12
    assert await _count(app, Product, admin.org_id) == 12
    body = (await committing_client.get(f"{BASE}/jobs/{job_id}", headers=admin.headers)).json()
    assert body["status"] == "succeeded"
