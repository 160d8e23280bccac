"""Celery side of syncs: beat enqueues due integrations, the reaper fails dead jobs, and a real
worker process runs a sync end to end (and resumes one whose pool process was killed)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from httpx import AsyncClient
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.integrations.jobs import enqueue_due_body, reap_stale_body
from crm.models import Integration, Product, StockLevel, SyncJob
from tests.factories import add_member, login, make_org, make_user
from tests.sync.conftest import Worker, make_integration

BASE = "/api/v1/admin/sync"


async def test_beat_enqueues_due_integrations_only(
    db: AsyncSession, test_maker: async_sessionmaker[AsyncSession], toy: Path
) -> None:
    org_id = (await make_org(db)).id
    now = datetime.now(UTC)
    due = await make_integration(
        db, org_id, next_sync_at=now - timedelta(minutes=1), sync_interval_minutes=30
    )
    later = await make_integration(db, org_id, next_sync_at=now + timedelta(minutes=10))
    disabled = await make_integration(db, org_id, next_sync_at=now - timedelta(hours=1), enabled=False)
    busy = await make_integration(db, org_id, next_sync_at=now - timedelta(minutes=5))
    old_unscheduled = await make_integration(db, org_id, created_at=now - timedelta(hours=1))
    new_unscheduled = await make_integration(db, org_id, created_at=now - timedelta(minutes=2))
    db.add(SyncJob(organization_id=org_id, integration_id=busy.id, status="running"))
    await db.commit()
    ids = {
        name: i.id
        for name, i in {
            "due": due,
            "later": later,
            "disabled": disabled,
            "busy": busy,
            "old": old_unscheduled,
            "new": new_unscheduled,
        }.items()
    }

    started = await enqueue_due_body(now, maker=test_maker)

    db.expire_all()
    jobs = (await db.scalars(select(SyncJob).where(SyncJob.id.in_(started)))).all()
    assert sorted(j.integration_id for j in jobs) == sorted([ids["due"], ids["old"]])
    assert all(j.trigger == "scheduled" and j.status == "queued" for j in jobs)
    refreshed = await db.get(Integration, ids["due"])
    assert refreshed is not None
    assert refreshed.next_sync_at == now + timedelta(minutes=30)
    busy_jobs = await db.scalar(
        select(func.count()).select_from(SyncJob).where(SyncJob.integration_id == ids["busy"])
    )
    assert busy_jobs == 1

    # A minute later nothing new: the started ones are active and the others not due.
    assert await enqueue_due_body(now + timedelta(minutes=1), maker=test_maker) == []


async def test_reaper_fails_jobs_whose_worker_died(
    db: AsyncSession, test_maker: async_sessionmaker[AsyncSession], toy: Path
) -> None:
    org_id = (await make_org(db)).id
    now = datetime.now(UTC)
    integrations = [await make_integration(db, org_id) for _ in range(4)]
    stale = SyncJob(
        organization_id=org_id,
        integration_id=integrations[0].id,
        status="running",
        heartbeat_at=now - timedelta(minutes=20),
    )
    alive = SyncJob(
        organization_id=org_id,
        integration_id=integrations[1].id,
        status="running",
        heartbeat_at=now - timedelta(minutes=1),
    )
    never = SyncJob(
        organization_id=org_id,
        integration_id=integrations[2].id,
        status="queued",
        created_at=now - timedelta(hours=7),
    )
    waiting = SyncJob(
        organization_id=org_id, integration_id=integrations[3].id, status="queued", created_at=now
    )
    db.add_all([stale, alive, never, waiting])
    await db.commit()
    ids = [j.id for j in (stale, alive, never, waiting)]
    integration_id = integrations[0].id

    reaped = await reap_stale_body(now, maker=test_maker)

    assert sorted(reaped) == sorted([ids[0], ids[2]])
    db.expire_all()
    jobs = {j.id: j for j in (await db.scalars(select(SyncJob).where(SyncJob.id.in_(ids)))).all()}
    assert jobs[ids[0]].status == "failed"
    assert jobs[ids[0]].error == "the worker running this sync stopped (no heartbeat)"
    assert jobs[ids[0]].finished_at is not None
    assert jobs[ids[2]].status == "failed"
    assert jobs[ids[2]].error == "the sync never started (no worker took it)"
    assert jobs[ids[1]].status == "running"
    assert jobs[ids[3]].status == "queued"
    integration = await db.get(Integration, integration_id)
    assert integration is not None
    assert integration.last_sync_status == "failed"
    assert await reap_stale_body(now, maker=test_maker) == []


async def _committed_admin(app: Any, client: AsyncClient, settings: dict[str, Any]) -> tuple[Any, int]:
    async with app.state.sessionmaker() as session:
        user = await make_user(session)
        org = await make_org(session)
        await add_member(session, org, user, "admin")
        integration = await make_integration(session, org.id, settings=settings)
        integration_id = integration.id
        await session.commit()
    return await login(client, user, org_id=org.id), integration_id


async def _wait_terminal(app: Any, worker: Worker, job_id: int, seconds: float = 90) -> SyncJob:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert worker.process.poll() is None, "the worker exited early:\n" + worker.log()
        async with app.state.sessionmaker() as session:
            job = await session.get(SyncJob, job_id)
        assert job is not None
        if job.status in ("succeeded", "failed", "cancelled"):
            return job
        await asyncio.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish; worker log:\n{worker.log()}")


async def _count(app: Any, model: Any, org_id: int) -> int:
    async with app.state.sessionmaker() as session:
        return int(
            await session.scalar(
                select(func.count()).select_from(model).where(model.organization_id == org_id)
            )
            or 0
        )


async def test_a_real_worker_runs_a_started_sync(
    app: Any, committing_client: AsyncClient, toy_worker: Worker
) -> None:
    admin, integration_id = await _committed_admin(
        app, committing_client, {"products": 30, "stores": 2, "page_size": 10}
    )

    started = await committing_client.post(
        f"{BASE}/start", json={"integration_id": integration_id}, headers=admin.headers
    )
    assert started.status_code == 202, started.text
    job = await _wait_terminal(app, toy_worker, started.json()["id"])

    assert job.status == "succeeded", (job.error, toy_worker.log())
    assert job.counts["products"]["created"] == 30
    assert job.counts["stock"]["created"] == 60
    assert await _count(app, Product, admin.org_id) == 30
    body = (await committing_client.get(f"{BASE}/jobs/{job.id}", headers=admin.headers)).json()
    assert body["status"] == "succeeded"
    assert body["counts"]["products"] == {
        "fetched": 30,
        "created": 30,
        "updated": 0,
        "unchanged": 0,
        "failed": 0,
    }


def _pool_children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


async def test_a_killed_pool_process_is_redelivered_and_ends_with_the_sources_rows(
    app: Any, committing_client: AsyncClient, toy_worker: Worker
) -> None:
    admin, integration_id = await _committed_admin(
        app, committing_client, {"products": 60, "stores": 1, "folders": 0, "page_size": 5, "page_delay": 0.2}
    )
    started = await committing_client.post(
        f"{BASE}/start",
        json={"integration_id": integration_id, "entities": ["products", "stores", "stock"]},
        headers=admin.headers,
    )
    job_id = started.json()["id"]

    # Wait until some pages are committed, then kill the pool process running the job.
    deadline = time.monotonic() + 60
    while await _count(app, Product, admin.org_id) < 15:
        assert time.monotonic() < deadline, toy_worker.log()
        await asyncio.sleep(0.2)
    children = _pool_children(toy_worker.process.pid)
    assert children, "no pool process found"
    os.kill(children[0], signal.SIGKILL)

    job = await _wait_terminal(app, toy_worker, job_id, seconds=120)

    assert job.status == "succeeded", (job.error, toy_worker.log())
    assert job.attempts == 2
    assert await _count(app, Product, admin.org_id) == 60
    assert await _count(app, StockLevel, admin.org_id) == 60
    async with app.state.sessionmaker() as session:
        ids = (
            await session.scalars(select(Product.external_id).where(Product.organization_id == admin.org_id))
        ).all()
    assert sorted(ids) == sorted(f"p{i}" for i in range(60))


async def test_a_job_failed_from_outside_while_running_stores_nothing_more(
    app: Any, committing_client: AsyncClient, toy_worker: Worker
) -> None:
    """A run whose job was ended meanwhile (the reaper, after losing sight of it) stops at its next
    page instead of writing on under a terminal job; a new start then finishes the work."""
    admin, integration_id = await _committed_admin(
        app, committing_client, {"products": 60, "stores": 1, "folders": 0, "page_size": 5, "page_delay": 0.3}
    )
    body = {"integration_id": integration_id, "entities": ["products"]}
    started = await committing_client.post(f"{BASE}/start", json=body, headers=admin.headers)
    assert started.status_code == 202, started.text
    job_id = started.json()["id"]
    deadline = time.monotonic() + 60
    while await _count(app, Product, admin.org_id) < 10:
        assert time.monotonic() < deadline, toy_worker.log()
        await asyncio.sleep(0.1)
    async with app.state.sessionmaker() as session:
        await session.execute(
            update(SyncJob).where(SyncJob.id == job_id).values(status="failed", error="reaped meanwhile")
        )
        await session.commit()

    await asyncio.sleep(2.5)
    stored = await _count(app, Product, admin.org_id)
    await asyncio.sleep(1.5)
    assert await _count(app, Product, admin.org_id) == stored < 60
    job = await _wait_terminal(app, toy_worker, job_id)
    assert (job.status, job.error) == ("failed", "reaped meanwhile")

    again = await committing_client.post(f"{BASE}/start", json=body, headers=admin.headers)
    assert again.status_code == 202, again.text
    done = await _wait_terminal(app, toy_worker, again.json()["id"])
    assert done.status == "succeeded", (done.error, toy_worker.log())
    assert await _count(app, Product, admin.org_id) == 60
