"""Test harness: a real PostgreSQL database per xdist worker built with `alembic upgrade head`,
a real Redis database per worker, and every test inside a transaction that is rolled back."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
WORKER_N = int(WORKER.removeprefix("gw") or 0)
PG_BASE = os.environ.get("TEST_DATABASE_BASE", "postgresql+asyncpg://postgres@127.0.0.1:5432")
REDIS_BASE = os.environ.get("TEST_REDIS_BASE", "redis://127.0.0.1:6379")
# CRM_TEST_SLOT / CRM_TEST_REDIS_DB let several suites run side by side on one machine.
SLOT = os.environ.get("CRM_TEST_SLOT", "main")
DB_NAME = f"crm_test_{SLOT}_{WORKER}"
TEST_DATABASE_URL = f"{PG_BASE}/{DB_NAME}"
REDIS_DB = int(os.environ.get("CRM_TEST_REDIS_DB", 8)) + WORKER_N
TEST_REDIS_URL = f"{REDIS_BASE}/{REDIS_DB % 16}"
ROOT = Path(__file__).resolve().parents[1]

# Settings are read from the environment: pick the test ones before the app is imported.
os.environ.update(
    {
        "ENVIRONMENT": "test",
        "DATABASE_URL": TEST_DATABASE_URL,
        "REDIS_URL": TEST_REDIS_URL,
        "CELERY_BROKER_URL": f"{REDIS_BASE}/{(REDIS_DB + 4) % 16}",
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
        "CREATE_ADMIN_ON_STARTUP": "false",
        "ALLOW_PRIVATE_INTEGRATION_URLS": "true",
    }
)

from httpx import ASGITransport, AsyncClient  # noqa: E402
from redis.asyncio import Redis  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker  # noqa: E402

from crm.config import Settings, get_settings  # noqa: E402
from crm.core.db import get_session, session_scope  # noqa: E402
from crm.custom_fields.service import definition_cache  # noqa: E402
from crm.main import create_app  # noqa: E402
from crm.models import Base  # noqa: E402
from crm.webhooks.delivery import forget_messages  # noqa: E402

get_settings.cache_clear()


def _create_database() -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(PG_BASE.replace("+asyncpg", "") + "/postgres")
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{DB_NAME}"')
        finally:
            await conn.close()

    asyncio.run(run())
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        check=True,
        env={**os.environ, "DATABASE_URL": TEST_DATABASE_URL},
        capture_output=True,
    )


@pytest.fixture(scope="session")
def database() -> str:
    _create_database()
    return TEST_DATABASE_URL


@pytest.fixture(scope="session")
def settings(database: str) -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[object]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def connection(app: object) -> AsyncIterator[AsyncConnection]:
    """One connection in an outer transaction that is rolled back after the test."""
    async with app.state.engine.connect() as conn:  # type: ignore[attr-defined]
        transaction = await conn.begin()
        try:
            yield conn
        finally:
            if transaction.is_active:
                await transaction.rollback()


@pytest.fixture
def test_maker(connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(
        bind=connection, expire_on_commit=False, autoflush=False, join_transaction_mode="create_savepoint"
    )


@pytest.fixture
async def db(test_maker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """The test's own session, for factories and for asserting what is stored."""
    async with test_maker() as session:
        yield session


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis_url, decode_responses=True)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def client(
    app: object, test_maker: async_sessionmaker[AsyncSession], redis: Redis, db: AsyncSession
) -> AsyncIterator[AsyncClient]:
    """HTTP client whose requests run inside the test's transaction (savepoints per request)."""

    async def override() -> AsyncIterator[AsyncSession]:
        # Each request sees what the test stored and nothing of its stale identity map.
        db.expunge_all()
        async with session_scope(test_maker) as session:
            yield session

    app.dependency_overrides[get_session] = override  # type: ignore[attr-defined]
    # A Redis failure seen by an earlier test must not leave this one skipping Redis.
    app.state.redis.forget_failures()  # type: ignore[attr-defined]
    transport = ASGITransport(app=app)  # type: ignore[arg-type]
    try:
        async with AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c
    finally:
        app.dependency_overrides.pop(get_session, None)  # type: ignore[attr-defined]


@pytest.fixture
async def committing_client(app: object, redis: Redis) -> AsyncIterator[AsyncClient]:
    """HTTP client on the app's real sessions (real commits) for races and locks.
    Every table is emptied afterwards."""
    app.state.redis.forget_failures()  # type: ignore[attr-defined]
    transport = ASGITransport(app=app)  # type: ignore[arg-type]
    try:
        async with AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c
    finally:
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        async with app.state.engine.begin() as conn:  # type: ignore[attr-defined]
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        # Ids start again at 1: what this process keeps by event or organization id goes too.
        forget_messages()
        definition_cache.clear()


pytest_plugins = ["tests.factories"]


@pytest.fixture
def override_settings(settings: Settings) -> Iterator[Callable[..., None]]:
    """`override_settings(rate_limit_login_per_ip="2/hour")` changes the live (cached) settings for
    one test; the app reads them per request. Every changed attribute is restored afterwards."""
    saved: dict[str, object] = {}

    def apply(**values: object) -> None:
        for name, value in values.items():
            if not hasattr(settings, name):
                raise AttributeError(f"Settings has no {name!r}")
            saved.setdefault(name, getattr(settings, name))
            setattr(settings, name, value)

    try:
        yield apply
    finally:
        for name, value in saved.items():
            setattr(settings, name, value)


#: Nothing listens here: connections are refused at once.
DOWN_REDIS_URL = "redis://127.0.0.1:1/0"


@pytest.fixture(scope="session")
async def redis_down_app(settings: Settings) -> AsyncIterator[object]:
    """A second app whose Redis is unreachable (rate limits and revocation fall back to PostgreSQL)."""
    application = create_app(settings.model_copy(update={"redis_url": DOWN_REDIS_URL}))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def redis_down_client(
    redis_down_app: object, test_maker: async_sessionmaker[AsyncSession], db: AsyncSession
) -> AsyncIterator[AsyncClient]:
    """Like `client`, inside the test's transaction, but talking to `redis_down_app`."""

    async def override() -> AsyncIterator[AsyncSession]:
        db.expunge_all()
        async with session_scope(test_maker) as session:
            yield session

    redis_down_app.dependency_overrides[get_session] = override  # type: ignore[attr-defined]
    transport = ASGITransport(app=redis_down_app)  # type: ignore[arg-type]
    try:
        async with AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c
    finally:
        redis_down_app.dependency_overrides.pop(get_session, None)  # type: ignore[attr-defined]
