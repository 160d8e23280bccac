"""The whole worker killed mid-sync (SIGKILL to the main process and its pool) against the fake
MoySklad: the reaper fails the job with a reason at once, and the finish hooks (alerts) run after,
in a task of their own. A finish hook that takes too long is cut off and never keeps a job active."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.config import Settings
from crm.integrations import engine
from crm.integrations.jobs import reap_stale_body
from crm.models import Alert, Integration, Product, SyncJob
from tests.factories import make_org
from tests.fakes.moysklad import FakeConfig, FakeMoySklad
from tests.integrations.moysklad.conftest import fake  # noqa: F401 - the fake MoySklad fixture
from tests.sync.conftest import make_integration
from tests.sync.test_jobs import _committed_admin, _count
from tests.workers import Worker, celery_worker

SYNC = "/api/v1/admin/sync"
SLOW = FakeConfig(products=120, services=0, folders=1, stores=1, counterparties=0, documents=0, latency=0.15)


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[Worker]:
    with celery_worker(settings, tmp_path, name="reaper-a") as started:
        yield started


@pytest.mark.parametrize("fake", [SLOW], indirect=True)
async def test_a_job_whose_whole_worker_was_killed_is_failed_then_its_hooks_run(
    app: Any,
    committing_client: AsyncClient,
    worker: Worker,
    fake: FakeMoySklad,  # noqa: F811
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def org_wide_pass(session: AsyncSession, job: SyncJob) -> None:
        await asyncio.sleep(45)  # as the low-stock pass took on 30 000 products

    # In this process (the reaper's) the hooks include one as slow as the real low-stock pass was.
    monkeypatch.setattr(engine, "SYNC_FINISHED_HOOKS", [*engine.SYNC_FINISHED_HOOKS, org_wide_pass])
    admin, _ = await _committed_admin(app, committing_client, {})
    created = await committing_client.post(
        "/api/v1/admin/integrations",
        json={
            "provider": "moysklad",
            "name": "Shop",
            "base_url": fake.base_url,
            "credentials": {"token": fake.config.token},
            "settings": {"page_size": 10, "backoff_seconds": 0.01, "rate_limit_units": 45},
        },
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    integration_id = created.json()["id"]
    started = await committing_client.post(
        f"{SYNC}/start", json={"integration_id": integration_id}, headers=admin.headers
    )
    assert started.status_code == 202, started.text
    job_id = started.json()["id"]

    deadline = time.monotonic() + 90
    while await _count(app, Product, admin.org_id) < 20:
        assert worker.process.poll() is None, worker.log()
        assert time.monotonic() < deadline, worker.log()
        await asyncio.sleep(0.2)
    pool = _children(worker.process.pid)
    assert pool, "no pool process"
    for pid in [worker.process.pid, *pool]:
        os.kill(pid, signal.SIGKILL)
    worker.process.wait(timeout=10)
    await asyncio.sleep(0.5)

    async with app.state.sessionmaker() as session:
        job = await session.get(SyncJob, job_id)
    assert job is not None
    assert job.status == "running"
    stored = await _count(app, Product, admin.org_id)
    assert 20 <= stored < 120

    # A new worker comes up (its start empties this test's broker database: the dead worker's
    # message is gone, as after a broker restart).
    second_dir = tmp_path / "second"
    second_dir.mkdir()
    with celery_worker(settings, second_dir, name="reaper-b") as second:
        second.wait_ready()
        # Ten minutes later the heartbeat is stale and nobody holds the job's lock: the reaper (the
        # real function, on the real engine) fails the job and commits before anything else.
        began = time.monotonic()
        reaped = await reap_stale_body(datetime.now(UTC) + timedelta(minutes=11), app.state.sessionmaker)
        assert reaped == [job_id]
        assert time.monotonic() - began < 10
        async with app.state.sessionmaker() as session:
            job = await session.get(SyncJob, job_id)
            integration = await session.get(Integration, integration_id)
        assert job is not None
        assert integration is not None
        assert job.status == "failed"
        assert job.error == "the worker running this sync stopped (no heartbeat)"
        assert job.finished_at is not None
        assert integration.last_sync_status == "failed"
        body = (await committing_client.get(f"{SYNC}/jobs/{job_id}", headers=admin.headers)).json()
        assert (body["status"], body["error"]) == ("failed", job.error)
        assert await reap_stale_body(datetime.now(UTC) + timedelta(minutes=11), app.state.sessionmaker) == []

        # The hooks were sent as a task of their own: the worker runs them (the failed-sync alert).
        deadline = time.monotonic() + 60
        while True:
            async with app.state.sessionmaker() as session:
                alert = await session.scalar(
                    select(Alert).where(
                        Alert.organization_id == admin.org_id,
                        Alert.kind == "sync_failed",
                        Alert.entity_id == integration_id,
                    )
                )
            if alert is not None:
                break
            assert second.process.poll() is None, second.log()
            assert time.monotonic() < deadline, "the finish hooks did not run:\n" + second.log()
            await asyncio.sleep(0.3)
    assert alert.message == "the worker running this sync stopped (no heartbeat)"
    assert alert.data["job_id"] == job_id

    # The integration is free again: a new start is accepted.
    again = await committing_client.post(
        f"{SYNC}/start", json={"integration_id": integration_id}, headers=admin.headers
    )
    assert again.status_code == 202, again.text


async def test_a_slow_finish_hook_is_cut_off_and_the_others_still_run(
    db: AsyncSession, test_maker: async_sessionmaker[AsyncSession], toy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    org_id = (await make_org(db)).id
    integration = await make_integration(db, org_id)
    job = SyncJob(organization_id=org_id, integration_id=integration.id, status="failed", error="boom")
    db.add(job)
    await db.commit()
    ran: list[str] = []

    async def slow_hook(session: AsyncSession, job: SyncJob) -> None:
        await asyncio.sleep(30)
        ran.append("slow")  # pragma: no cover - cut off before

    async def quick_hook(session: AsyncSession, job: SyncJob) -> None:
        ran.append(f"quick:{job.status}")

    monkeypatch.setattr(engine, "SYNC_FINISHED_HOOKS", [slow_hook, quick_hook])
    began = time.monotonic()
    done = await engine.run_finish_hooks(test_maker, job.id, limit=0.5)

    assert time.monotonic() - began < 10
    assert done == ["quick_hook"]
    assert ran == ["quick:failed"]
