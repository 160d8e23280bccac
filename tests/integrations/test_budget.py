"""Provider budgets shared through Redis (SPEC §20.15): two real worker processes syncing two
integrations of one Bitrix24 portal stay inside the portal's limit together; with Redis away each
process falls back to a conservative budget of its own."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient

from crm.config import Settings
from crm.integrations.budget import FALLBACK_SHARE, Budget
from tests.fakes.bitrix24 import FakeBitrix24, FakeConfig, running
from tests.integrations.bitrix24.test_worker import admin_session, connect, wait_job
from tests.workers import celery_worker

SYNC = "/api/v1/admin/sync"


@pytest.fixture
def limited_fake() -> Iterator[FakeBitrix24]:
    """A portal with a tight leaky bucket: 10 requests, draining 5 per second."""
    config = FakeConfig(contacts=1500, companies=0, deals=0, burst=10, rate=5.0, min_gap=0.3)
    with running(FakeBitrix24(config)) as server:
        yield server


async def test_two_workers_share_one_portal_budget(
    app: Any, committing_client: AsyncClient, settings: Settings, tmp_path: Path, limited_fake: FakeBitrix24
) -> None:
    client = committing_client
    fake = limited_fake
    budget = {"entities": ["contacts"], "use_batch": False, "rate_per_second": 5, "burst": 8}
    first_admin = await admin_session(app, client)
    second_admin = await admin_session(app, client)
    first = await connect(client, first_admin, fake, **budget)
    second = await connect(client, second_admin, fake, **budget)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    with (
        celery_worker(settings, tmp_path / "a", name="budget-a") as worker_a,
        celery_worker(settings, tmp_path / "b", name="budget-b") as worker_b,
    ):
        await asyncio.sleep(3)  # both workers ready before the jobs arrive
        ids = []
        for admin, integration_id in ((first_admin, first), (second_admin, second)):
            started = await client.post(
                f"{SYNC}/start", json={"integration_id": integration_id}, headers=admin.headers
            )
            assert started.status_code == 202, started.text
            ids.append(started.json()["id"])
        jobs = [await wait_job(app, worker_a, job_id, seconds=120) for job_id in ids]
        for job in jobs:
            assert job.status == "succeeded", (job.error, worker_a.log(), worker_b.log())
            assert job.counts["contacts"]["created"] == 1500
        # Both ran at the same time, one in each worker process.
        a, b = jobs
        assert a.started_at is not None
        assert b.started_at is not None
        assert a.finished_at is not None
        assert b.finished_at is not None
        overlap = a.started_at < b.finished_at and b.started_at < a.finished_at
        assert overlap, (worker_a.log(), worker_b.log())
    assert fake.http_requests >= 60
    assert fake.limited == 0  # never over the portal's bucket, together
    assert fake.early_requests == 0
    assert fake.max_rate <= 8 + 5


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def private_redis() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server of this test's own (stopped by the test to make Redis go away)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0", process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)


async def _spend(budgets: list[Budget], seconds: float) -> int:
    """How many requests the budgets together allow in `seconds` (each acquiring in a loop)."""
    count = 0
    deadline = time.monotonic() + seconds

    async def loop(budget: Budget) -> None:
        nonlocal count
        while True:
            await budget.acquire()
            if time.monotonic() >= deadline:
                return
            count += 1

    await asyncio.wait_for(asyncio.gather(*(loop(b) for b in budgets)), seconds + 5)
    return count


async def test_budget_shared_then_conservative_without_redis(
    private_redis: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, process = private_redis
    # Two "processes" (two budget objects, as two workers would hold) on one account key.
    budgets = [Budget("crm:budget:test:acct", rate=10, burst=5, redis_url=url) for _ in range(2)]
    try:
        spent = await _spend(budgets, 2.0)
        # Together: at most the burst plus the rate over the time, not twice that.
        assert 5 + 10 * 2 - 2 <= spent <= 5 + 10 * 2 + 1
        assert all(b.fallbacks == 0 for b in budgets)

        process.terminate()
        process.wait(timeout=10)
        spent = await _spend(budgets, 2.0)
        assert all(b.fallbacks >= 1 for b in budgets)
        # Each falls back to its share of the rate: together still below the account's limit.
        per_process = 10 * FALLBACK_SHARE * 2 + max(1, int(5 * FALLBACK_SHARE))
        assert spent <= 2 * per_process + 2
        assert spent < 5 + 10 * 2
    finally:
        for budget in budgets:
            await budget.aclose()
