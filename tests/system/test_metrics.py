"""Metrics beyond HTTP on `/metrics` (DB pool, cache, jobs, queue depth) and a real worker's own
endpoint (Celery task counts, durations, failures)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx import AsyncClient
from redis import Redis as SyncRedis
from sqlalchemy import delete

from crm.config import Settings
from crm.models import ImportJob, Organization
from tests.factories import Factory
from tests.system.topology import PORT_BASE, port_open
from tests.workers import Worker, celery_worker


def samples(text: str, name: str) -> dict[str, float]:
    """{label text: value} of one series name."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, _, value = line.rpartition(" ")
            found[labels[len(name) :]] = float(value)
    return found


def value(text: str, series: str, /, **labels: str) -> float:
    total = 0.0
    matched = False
    for labels_text, v in samples(text, series).items():
        if all(f'{k}="{val}"' in labels_text for k, val in labels.items()):
            total += v
            matched = True
    assert matched, f"{series}{labels} missing"
    return total


async def scrape(client: AsyncClient) -> str:
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return r.text


async def test_pool_and_cache_series_after_requests(client: AsyncClient, factory: Factory) -> None:
    owner = await factory.actor()
    before = await scrape(client)
    checkouts = value(before, "crm_db_pool_checkouts_total", pool="main")
    for _ in range(2):
        r = await client.get("/api/v1/contacts", headers=owner.headers)
        assert r.status_code == 200
    after = await scrape(client)

    # the pool: its size, what is in use (this scrape's request holds none), and checkouts counted
    assert value(after, "crm_db_pool_size", pool="main") >= 1
    assert value(after, "crm_db_pool_checked_out", pool="main") >= 0
    assert value(after, "crm_db_pool_waiting", pool="main") == 0
    assert "crm_db_pool_overflow" in after
    # (the test's requests share its one connection; the scrape's job count takes a pooled one)
    assert value(after, "crm_db_pool_checkouts_total", pool="main") > checkouts
    # the list total is cached per organization: a miss, then a hit
    hits = value(after, "crm_cache_requests_total", name="count:contact", result="hit")
    misses = value(after, "crm_cache_requests_total", name="count:contact", result="miss")
    assert hits >= 1
    assert misses >= 1


async def test_cache_bypass_is_counted_when_redis_is_away(
    redis_down_client: AsyncClient, factory: Factory
) -> None:
    owner = await factory.actor()
    before = samples(await scrape(redis_down_client), "crm_cache_requests_total")
    r = await redis_down_client.get("/api/v1/contacts", headers=owner.headers)
    assert r.status_code == 200
    after = await scrape(redis_down_client)
    key = '{name="count:contact",result="bypass"}'
    assert samples(after, "crm_cache_requests_total")[key] == before.get(key, 0) + 1


async def test_job_outcomes_and_queue_depth_are_sampled_at_scrape(
    app: Any, client: AsyncClient, settings: Settings
) -> None:
    async with app.state.sessionmaker() as session:
        org = Organization(name="Metrics Org", slug="metrics-org-jobs")
        session.add(org)
        await session.flush()
        for status in ("succeeded", "succeeded", "failed", "cancelled"):
            session.add(
                ImportJob(organization_id=org.id, entity="contacts", file_format="csv", status=status)
            )
        await session.commit()
        org_id = org.id
    broker = SyncRedis.from_url(settings.celery_broker_url)
    broker.delete("crm")
    broker.rpush("crm", b"{}", b"{}", b"{}")
    try:
        text = await scrape(client)
        assert value(text, "crm_jobs", kind="import", status="succeeded") == 2
        assert value(text, "crm_jobs", kind="import", status="failed") == 1
        assert value(text, "crm_jobs", kind="import", status="cancelled") == 1
        assert value(text, "crm_celery_queue_length", queue="crm") == 3
    finally:
        broker.delete("crm")
        broker.close()
        async with app.state.sessionmaker() as session:
            await session.execute(delete(ImportJob).where(ImportJob.organization_id == org_id))
            await session.execute(delete(Organization).where(Organization.id == org_id))
            await session.commit()


# --- the worker's own endpoint ------------------------------------------------------------------------
WORKER_METRICS_PORT = PORT_BASE + 6


@pytest.fixture
def metrics_worker(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Worker]:
    """A real prefork worker (one pool process) serving its metrics on WORKER_METRICS_PORT."""
    monkeypatch.setenv("WORKER_METRICS_PORT", str(WORKER_METRICS_PORT))
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    (tmp_path / "metrics").mkdir()
    with celery_worker(settings, tmp_path, name="metrics") as worker:
        deadline = time.monotonic() + 60
        while not port_open(WORKER_METRICS_PORT):
            assert worker.process.poll() is None, worker.log()
            assert time.monotonic() < deadline, worker.log()
            time.sleep(0.2)
        yield worker


async def _worker_scrape_until(worker: Worker, check: Any, seconds: float = 60) -> str:
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=5) as http:
        while True:
            r = await http.get(f"http://127.0.0.1:{WORKER_METRICS_PORT}/metrics")
            assert r.status_code == 200
            if check(r.text):
                return r.text
            assert worker.process.poll() is None, worker.log()
            assert time.monotonic() < deadline, r.text[-3000:] + worker.log()
            await asyncio.sleep(0.3)


async def test_worker_metrics_after_real_tasks(metrics_worker: Worker) -> None:
    from crm.auth.jobs import purge_expired_sessions
    from crm.worker.app import celery_app

    name = "auth.purge_expired_sessions"
    purge_expired_sessions.delay()
    celery_app.send_task(name, args=[1, 2, 3], queue="crm")  # wrong arguments: the task fails

    text = await _worker_scrape_until(
        metrics_worker,
        lambda t: all(
            any(f'task="{name}"' in k and f'outcome="{o}"' in k for k in samples(t, "crm_celery_tasks_total"))
            for o in ("succeeded", "failed")
        ),
    )
    assert value(text, "crm_celery_tasks_total", task=name, outcome="succeeded") == 1
    assert value(text, "crm_celery_tasks_total", task=name, outcome="failed") == 1
    assert value(text, "crm_celery_task_duration_seconds_count", task=name) == 2
    assert 0 < value(text, "crm_celery_task_duration_seconds_sum", task=name) < 30
    assert value(text, "crm_celery_tasks_running", task=name) == 0
    # The queue drains: the worker also sends itself a pass over unsent jobs when it comes up, so
    # the gauge is read until that message is taken too.
    text = await _worker_scrape_until(
        metrics_worker, lambda t: value(t, "crm_celery_queue_length", queue="crm") == 0, seconds=30
    )
    assert value(text, "crm_celery_queue_length", queue="crm") == 0
