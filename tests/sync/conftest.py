"""Sync engine tests: the toy provider installed as a plugin, integrations stored directly."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.config import Settings
from crm.core.redis import SafeRedis
from crm.integrations import engine
from crm.integrations.crypto import encrypt_credentials
from crm.models import Integration, SyncJob
from crm.sync.service import start_sync
from tests.fakes.plugins import installed_provider
from tests.workers import Worker, celery_worker

TOY = "tests.fakes.toy_provider:ToyProvider"
SECRET = "tok-5ecret-value-9f2c"
_seq = itertools.count(1)


@pytest.fixture
def toy(tmp_path: Path) -> Iterator[Path]:
    """The toy provider installed as a separate distribution (entry point group `crm.integrations`)."""
    with installed_provider("toy", TOY, tmp_path) as site:
        yield site


async def make_integration(
    db: AsyncSession,
    organization_id: int,
    *,
    provider: str = "toy",
    settings: dict[str, Any] | None = None,
    credentials: dict[str, Any] | None = None,
    **values: Any,
) -> Integration:
    integration = Integration(
        organization_id=organization_id,
        provider=provider,
        name=f"Integration {next(_seq)}",
        credentials_encrypted=encrypt_credentials(credentials or {"api_key": SECRET}),
        settings=settings or {},
        webhook_secret=secrets.token_urlsafe(16),
        **values,
    )
    db.add(integration)
    await db.flush()
    return integration


class Syncer:
    """Starts jobs and runs them in-process through the engine, on the test's transaction."""

    def __init__(self, db: AsyncSession, maker: async_sessionmaker[AsyncSession], redis: SafeRedis) -> None:
        self.db = db
        self.maker = maker
        self.redis = redis

    async def start(self, integration: Integration, **kwargs: Any) -> SyncJob:
        await self.db.refresh(integration)
        job = await start_sync(
            self.db,
            organization_id=integration.organization_id,
            integration_id=integration.id,
            enqueue=False,
            **kwargs,
        )
        await self.db.commit()
        return job

    async def run(self, job_id: int, **kwargs: Any) -> SyncJob:
        await engine.run_sync_job(job_id, maker=self.maker, redis=self.redis, **kwargs)
        self.db.expire_all()
        job = await self.db.get(SyncJob, job_id)
        assert job is not None
        return job

    async def sync(self, integration: Integration, **kwargs: Any) -> SyncJob:
        job = await self.start(integration, **kwargs)
        return await self.run(job.id)


@pytest.fixture
def syncer(db: AsyncSession, test_maker: async_sessionmaker[AsyncSession], app: Any, toy: Path) -> Syncer:
    return Syncer(db, test_maker, app.state.redis)


@pytest.fixture
def toy_worker(settings: Settings, tmp_path: Path, toy: Path) -> Iterator[Worker]:
    """A real `celery worker` process (prefork, one child) that has the toy plugin installed."""
    with celery_worker(settings, tmp_path, name="sync-test", pythonpath=[toy]) as worker:
        yield worker
