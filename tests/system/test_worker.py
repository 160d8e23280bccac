"""Celery end to end: a real worker process consumes a job sent through the real broker."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from crm.config import Settings
from crm.core.security import hash_password
from crm.models import User, UserSession
from tests.workers import Worker, celery_worker


@pytest.fixture
def solo_worker(settings: Settings, tmp_path: Path) -> Iterator[Worker]:
    """`celery worker --pool solo -Q crm` on the test database and a test-only broker database."""
    with celery_worker(settings, tmp_path, name="test", pool="solo") as worker:
        yield worker


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
    solo_worker: Worker,
    expired_sessions: tuple[int, list[int], int],
) -> None:
    from crm.auth.jobs import purge_expired_sessions

    _, expired_ids, live_id = expired_sessions
    purge_expired_sessions.delay()

    engine: AsyncEngine = app.state.engine  # type: ignore[attr-defined]
    deadline = time.monotonic() + 30
    remaining = len(expired_ids)
    while time.monotonic() < deadline:
        assert solo_worker.process.poll() is None, "the worker exited early:\n" + solo_worker.log()
        async with engine.connect() as conn:
            remaining = await conn.scalar(
                select(func.count()).select_from(UserSession).where(UserSession.id.in_(expired_ids))
            )
        if remaining == 0:
            break
        await asyncio.sleep(0.5)
    assert remaining == 0, "no purge within 30 s; worker log:\n" + solo_worker.log()

    async with engine.connect() as conn:
        live = await conn.scalar(
            select(func.count()).select_from(UserSession).where(UserSession.id == live_id)
        )
    assert live == 1
