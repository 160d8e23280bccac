"""Celery end to end: a real worker process consumes a job sent through the real broker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis import Redis as SyncRedis
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from crm.config import Settings
from crm.core.security import hash_password
from crm.models import User, UserSession

ROOT = Path(__file__).resolve().parents[2]


class Worker:
    def __init__(self, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture
def celery_worker(settings: Settings, tmp_path: Path) -> Iterator[Worker]:
    """`celery worker --pool solo -Q crm` on the test database and a test-only broker database."""
    # The broker database belongs to this test run: drop messages left by an earlier one.
    broker = SyncRedis.from_url(settings.celery_broker_url)
    broker.flushdb()
    broker.close()
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "CELERY_BROKER_URL": settings.celery_broker_url,
        "LOG_LEVEL": "INFO",
    }
    log_path = tmp_path / "worker.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "crm.worker.app:celery_app",
            "worker",
            "--pool",
            "solo",
            "-Q",
            "crm",
            "--loglevel",
            "INFO",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "--hostname",
            f"test-{uuid.uuid4().hex[:8]}@%h",
        ],
        cwd=ROOT,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    try:
        yield Worker(process, log_path)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        log_file.close()


@pytest.fixture
async def expired_sessions(app: object) -> AsyncIterator[tuple[int, list[int], int]]:
    """A committed user with two sessions long past their expiry and one live session."""
    engine: AsyncEngine = app.state.engine  # type: ignore[attr-defined]
    email = f"worker-{uuid.uuid4().hex[:10]}@example.com"
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        user_id = await conn.scalar(
            User.__table__.insert()
            .values(email=email, full_name="Worker Test", password_hash=hash_password("Irrelevant-Pass-1"))
            .returning(User.id)
        )
        rows = [
            {"user_id": user_id, "refresh_jti": uuid.uuid4().hex, "expires_at": now - timedelta(days=40)},
            {"user_id": user_id, "refresh_jti": uuid.uuid4().hex, "expires_at": now - timedelta(days=90)},
            {"user_id": user_id, "refresh_jti": uuid.uuid4().hex, "expires_at": now + timedelta(days=7)},
        ]
        ids = list(
            (
                await conn.execute(UserSession.__table__.insert().values(rows).returning(UserSession.id))
            ).scalars()
        )
    try:
        yield user_id, ids[:2], ids[2]
    finally:
        async with engine.begin() as conn:
            await conn.execute(delete(User).where(User.id == user_id))  # sessions cascade


async def test_purge_expired_sessions_runs_in_a_real_worker(
    app: object,
    celery_worker: Worker,
    expired_sessions: tuple[int, list[int], int],
) -> None:
    from crm.auth.jobs import purge_expired_sessions

    _, expired_ids, live_id = expired_sessions
    purge_expired_sessions.delay()

    engine: AsyncEngine = app.state.engine  # type: ignore[attr-defined]
    deadline = time.monotonic() + 30
    remaining = len(expired_ids)
    while time.monotonic() < deadline:
        assert celery_worker.process.poll() is None, "the worker exited early:\n" + celery_worker.log()
        async with engine.connect() as conn:
            remaining = await conn.scalar(
                select(func.count()).select_from(UserSession).where(UserSession.id.in_(expired_ids))
            )
        if remaining == 0:
            break
        await asyncio.sleep(0.5)
    assert remaining == 0, "no purge within 30 s; worker log:\n" + celery_worker.log()

    async with engine.connect() as conn:
        live = await conn.scalar(
            select(func.count()).select_from(UserSession).where(UserSession.id == live_id)
        )
    assert live == 1
