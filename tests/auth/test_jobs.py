"""`crm.auth.jobs`: the housekeeping job, run on the test's transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.auth import jobs
from crm.core.db import session_scope
from crm.models import RateLimitCounter, User, UserSession
from tests.factories import Factory

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def job_on_test_db(monkeypatch: pytest.MonkeyPatch, test_maker: async_sessionmaker[AsyncSession]) -> None:
    @asynccontextmanager
    async def job_session() -> AsyncIterator[AsyncSession]:
        async with session_scope(test_maker) as session:
            yield session

    monkeypatch.setattr(jobs, "job_session", job_session)


def _session(user: User, *, expires: timedelta, revoked: timedelta | None = None) -> UserSession:
    return UserSession(
        user_id=user.id,
        refresh_jti="j",
        created_at=NOW - timedelta(days=60),
        last_used_at=NOW - timedelta(days=60),
        expires_at=NOW + expires,
        revoked_at=None if revoked is None else NOW + revoked,
    )


@pytest.mark.usefixtures("job_on_test_db")
class TestPurgeExpiredSessions:
    async def test_deletes_long_dead_sessions_and_stale_counters(
        self, factory: Factory, db: AsyncSession
    ) -> None:
        user = await factory.user()
        live = _session(user, expires=timedelta(days=3))
        recently_revoked = _session(user, expires=timedelta(days=3), revoked=timedelta(days=-1))
        recently_expired = _session(user, expires=timedelta(days=-29))
        long_expired = _session(user, expires=timedelta(days=-31))
        long_revoked = _session(user, expires=timedelta(days=3), revoked=timedelta(days=-31))
        db.add_all([live, recently_revoked, recently_expired, long_expired, long_revoked])
        db.add_all(
            [
                RateLimitCounter(key="rl:old", count=5, expires_at=NOW - timedelta(seconds=1)),
                RateLimitCounter(key="rl:current", count=2, expires_at=NOW + timedelta(seconds=30)),
            ]
        )
        await db.commit()
        kept = {live.id, recently_revoked.id, recently_expired.id}

        deleted = await jobs.purge_expired_sessions_body(now=NOW)

        assert deleted == 2
        db.expunge_all()
        remaining = set(
            (await db.execute(select(UserSession.id).where(UserSession.user_id == user.id))).scalars()
        )
        assert remaining == kept
        keys = set((await db.execute(select(RateLimitCounter.key))).scalars())
        assert keys == {"rl:current"}

    async def test_running_twice_deletes_nothing_more(self, factory: Factory, db: AsyncSession) -> None:
        user = await factory.user()
        db.add(_session(user, expires=timedelta(days=-40)))
        await db.commit()

        first = await jobs.purge_expired_sessions_body(now=NOW)
        second = await jobs.purge_expired_sessions_body(now=NOW)

        assert (first, second) == (1, 0)
