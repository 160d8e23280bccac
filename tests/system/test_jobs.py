"""`crm.system.jobs`: idempotency keys are purged after their 24 h, on the test's transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.core.db import session_scope
from crm.models import IdempotencyKey
from crm.system import jobs
from crm.worker.schedule import beat_schedule

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def job_on_test_db(monkeypatch: pytest.MonkeyPatch, test_maker: async_sessionmaker[AsyncSession]) -> None:
    @asynccontextmanager
    async def job_session() -> AsyncIterator[AsyncSession]:
        async with session_scope(test_maker) as session:
            yield session

    monkeypatch.setattr(jobs, "job_session", job_session)


def _key(name: str, expires: timedelta) -> IdempotencyKey:
    return IdempotencyKey(
        scope="u1|o1|POST|/api/v1/contacts", key=name, request_hash="h", expires_at=NOW + expires
    )


async def test_expired_keys_go_live_ones_stay(db: AsyncSession, job_on_test_db: None) -> None:
    db.add_all([_key("old", timedelta(seconds=-1)), _key("live", timedelta(hours=3))])
    await db.commit()

    assert await jobs.purge_idempotency_keys_body(NOW) == 1

    db.expunge_all()
    assert set((await db.execute(select(IdempotencyKey.key))).scalars()) == {"live"}


def test_the_purge_is_scheduled() -> None:
    assert any(e["task"] == "system.purge_idempotency_keys" for e in beat_schedule.values())
