"""No import is lost or miscounted (SPEC §17, §20.7): a worker killed mid-import gets the job again and
it resumes after its last committed chunk with the counts it had; a job whose enqueue failed while the
broker was away is sent again by `imports.requeue_queued` once the broker is back; a running job whose
whole worker died is redelivered by `imports.reap_stale` (or failed with a reason after too many
deliveries). Real processes, real faults: SIGKILL of worker processes, the Redis server stopped and
started again on its port."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select, update

from crm.config import Settings
from crm.imports.jobs import reap_stale_running, requeue_stale_queued
from crm.models import Activity, Contact, ImportJob, ImportUpload
from crm.worker.schedule import beat_schedule
from tests.factories import Actor, add_member, login, make_org, make_user
from tests.imports.support import URL, csv_bytes, upload
from tests.redis_server import RedisServer, app_broker, redis_server
from tests.workers import Worker, celery_worker

ROWS = 40_000


def _contacts_csv(rows: int) -> bytes:
    lines: list[list[Any]] = [["full_name", "email", "phone", "tags"]]
    lines += [
        [f"Person {i}", f"p{i}@example.com", f"+7 921 {i % 1000:03d}-{i % 97:02d}-11", "x"]
        for i in range(rows)
    ]
    return csv_bytes(lines)


async def _manager(app: Any, client: AsyncClient) -> Actor:
    async with app.state.sessionmaker() as session:
        user = await make_user(session)
        org = await make_org(session)
        await add_member(session, org, user, "manager")
        await session.commit()
    return await login(client, user, org_id=org.id)


async def _contacts(app: Any, org_id: int | None) -> int:
    async with app.state.sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).select_from(Contact).where(Contact.organization_id == org_id)
        )
    return int(count or 0)


async def _job(app: Any, job_id: int) -> ImportJob:
    async with app.state.sessionmaker() as session:
        job = await session.get(ImportJob, job_id)
        assert job is not None
        return job


async def _wait_terminal(app: Any, worker: Worker, job_id: int, seconds: float = 180) -> ImportJob:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = await _job(app, job_id)
        if job.status in ("succeeded", "failed"):
            return job
        await asyncio.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job.status}:\n{worker.log()}")


def _pool_children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


async def _kill_after_first_chunk(app: Any, worker: Worker, org_id: int | None, *, whole: bool) -> int:
    """SIGKILL the pool process (or the whole worker) once the first chunk is committed; returns the
    rows stored at that moment."""
    deadline = time.monotonic() + 120
    while (stored := await _contacts(app, org_id)) < 5000:
        assert time.monotonic() < deadline, worker.log()
        assert worker.process.poll() is None, worker.log()
        await asyncio.sleep(0.05)
    children = _pool_children(worker.process.pid)
    assert children, "no pool process found"
    if whole:
        os.kill(worker.process.pid, signal.SIGKILL)
    os.kill(children[0], signal.SIGKILL)
    return stored


async def _assert_complete(app: Any, job: ImportJob, org_id: int | None, attempts: int) -> None:
    assert job.status == "succeeded", job.error
    assert (job.processed_rows, job.total_rows) == (ROWS, ROWS)
    assert (job.created, job.updated, job.skipped, job.failed) == (ROWS, 0, 0, 0)
    assert job.attempts == attempts
    assert await _contacts(app, org_id) == ROWS
    async with app.state.sessionmaker() as session:
        payloads = (
            await session.scalars(
                select(Activity.payload).where(
                    Activity.organization_id == org_id, Activity.action == "imported"
                )
            )
        ).all()
        assert [(p["created"], p["updated"]) for p in payloads] == [(ROWS, 0)]
        assert await session.scalar(select(ImportUpload.job_id).where(ImportUpload.job_id == job.id)) is None


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[Worker]:
    with celery_worker(settings, tmp_path, name="imports-redelivery") as process:
        yield process


async def test_a_killed_pool_process_resumes_the_import_with_true_counts(
    app: Any, committing_client: AsyncClient, worker: Worker
) -> None:
    actor = await _manager(app, committing_client)
    response = await upload(committing_client, actor, _contacts_csv(ROWS), "contacts")
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]

    stored = await _kill_after_first_chunk(app, worker, actor.org_id, whole=False)
    assert stored < ROWS

    job = await _wait_terminal(app, worker, job_id)
    await _assert_complete(app, job, actor.org_id, attempts=2)
    body = (await committing_client.get(f"{URL}/{job_id}", headers=actor.headers)).json()
    assert (body["status"], body["created"], body["skipped"], body["processed_rows"]) == (
        "succeeded",
        ROWS,
        0,
        ROWS,
    )


async def test_a_job_whose_whole_worker_died_is_redelivered_by_the_reaper(
    app: Any, committing_client: AsyncClient, settings: Settings, tmp_path: Path
) -> None:
    """The worker's main process and its pool process are both killed: the message stays unacked in
    the broker (for the visibility timeout), so only the reaper can bring the job back."""
    actor = await _manager(app, committing_client)
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
    with celery_worker(settings, tmp_path / "first", name="imports-dead") as first:
        response = await upload(committing_client, actor, _contacts_csv(ROWS), "contacts")
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        stored = await _kill_after_first_chunk(app, first, actor.org_id, whole=True)
        first.process.wait(timeout=10)
    assert stored < ROWS
    job = await _job(app, job_id)
    assert (job.status, job.attempts) == ("running", 1)

    # Not yet silent for a minute: left alone.
    assert await reap_stale_running(app.state.sessionmaker) == []
    with celery_worker(settings, tmp_path / "second", name="imports-after") as second:
        # The lock died with the worker's connections; the heartbeat stopped with it.
        assert await reap_stale_running(app.state.sessionmaker, older_than=timedelta(0)) == [job_id]
        job = await _wait_terminal(app, second, job_id)
    await _assert_complete(app, job, actor.org_id, attempts=2)


async def test_a_job_that_keeps_killing_its_worker_is_failed_with_a_reason(
    app: Any, committing_client: AsyncClient
) -> None:
    actor = await _manager(app, committing_client)
    content = csv_bytes([["full_name", "email"], ["Ann", "ann@example.com"]])
    response = await upload(committing_client, actor, content, "contacts")
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    async with app.state.sessionmaker() as session:
        await session.execute(
            update(ImportJob)
            .where(ImportJob.id == job_id)
            .values(status="running", attempts=3, heartbeat_at=func.now() - timedelta(minutes=5))
        )
        await session.commit()

    assert await reap_stale_running(app.state.sessionmaker) == [job_id]

    body = (await committing_client.get(f"{URL}/{job_id}", headers=actor.headers)).json()
    assert body["status"] == "failed"
    assert body["error"] == "the worker running this import stopped 3 times; the import was given up"
    assert body["finished_at"] is not None
    assert await _contacts(app, actor.org_id) == 0
    async with app.state.sessionmaker() as session:
        assert await session.scalar(select(ImportUpload.job_id).where(ImportUpload.job_id == job_id)) is None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server as this process's broker, which the test stops and starts again."""
    with redis_server(tmp_path) as server, app_broker(server.url(1)):
        yield server


async def test_an_import_started_while_the_broker_is_away_runs_once_it_is_back(
    app: Any, committing_client: AsyncClient, settings: Settings, tmp_path: Path, broker: RedisServer
) -> None:
    actor = await _manager(app, committing_client)
    content = csv_bytes([["full_name", "email"], *[[f"Late {i}", f"late{i}@example.com"] for i in range(30)]])

    broker.stop()
    started = time.perf_counter()
    response = await upload(committing_client, actor, content, "contacts")
    elapsed = time.perf_counter() - started
    assert response.status_code == 202, response.text
    assert elapsed < 10, elapsed
    job_id = response.json()["id"]
    job = await _job(app, job_id)
    assert (job.status, job.attempts) == ("queued", 0)
    # The broker is still away: nothing can be sent, the job stays queued.
    assert await requeue_stale_queued(app.state.sessionmaker, older_than=timedelta(0)) == []
    assert (await _job(app, job_id)).status == "queued"

    broker.start()
    private = settings.model_copy(update={"celery_broker_url": broker.url(1)})
    with celery_worker(private, tmp_path, name="imports-requeue") as worker:
        # Younger than a minute: not sent again yet.
        assert await requeue_stale_queued(app.state.sessionmaker) == []
        assert await requeue_stale_queued(app.state.sessionmaker, older_than=timedelta(0)) == [job_id]
        job = await _wait_terminal(app, worker, job_id)
    assert (job.status, job.created, job.attempts) == ("succeeded", 30, 1)
    assert await _contacts(app, actor.org_id) == 30
    body = (await committing_client.get(f"{URL}/{job_id}", headers=actor.headers)).json()
    assert (body["status"], body["created"]) == ("succeeded", 30)


def test_beat_runs_the_requeue_and_the_reaper_every_minute() -> None:
    assert beat_schedule["imports-requeue-queued"] == {"task": "imports.requeue_queued", "schedule": 60.0}
    assert beat_schedule["imports-reap-stale"] == {"task": "imports.reap_stale", "schedule": 60.0}
