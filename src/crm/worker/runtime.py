"""Per-process asyncio runtime for job bodies.

asyncpg connections belong to one event loop, so each worker process owns one loop and one
engine, made on `worker_process_init`. Celery tasks are thin sync wrappers around `run_async`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from celery.signals import worker_process_init, worker_process_shutdown
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm.config import get_settings
from crm.core.db import create_engine, create_sessionmaker, session_scope
from crm.core.logging import configure_logging

T = TypeVar("T")


class _Runtime:
    loop: asyncio.AbstractEventLoop | None = None
    engine: AsyncEngine | None = None
    maker: async_sessionmaker[AsyncSession] | None = None


runtime = _Runtime()


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (as with the API under uvicorn): its sockets cost a fraction
    of the CPU of asyncio's own, which counts for jobs that talk a lot (webhook deliveries)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _ensure_loop() -> asyncio.AbstractEventLoop:
    if runtime.loop is None or runtime.loop.is_closed():
        runtime.loop = new_loop()
    return runtime.loop


def sessionmaker() -> async_sessionmaker[AsyncSession]:
    if runtime.maker is None:
        settings = get_settings()
        # Four kept: the relay and its senders use several at once, and a connection opened
        # past the pool is closed again after its statement (a new PostgreSQL backend each time).
        runtime.engine = create_engine(
            settings,
            url=settings.worker_database_url,
            application_name="crm-worker",
            pool_size=4,
            max_overflow=2,
        )
        runtime.maker = create_sessionmaker(runtime.engine)
    return runtime.maker


@worker_process_init.connect
def _init_process(**_: Any) -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    runtime.loop = new_loop()
    runtime.engine = None
    runtime.maker = None


@worker_process_shutdown.connect
def _shutdown_process(**_: Any) -> None:
    if runtime.engine is not None and runtime.loop is not None:
        runtime.loop.run_until_complete(runtime.engine.dispose())


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a job body on this process's loop."""
    return _ensure_loop().run_until_complete(coro)


@asynccontextmanager
async def job_session() -> AsyncIterator[AsyncSession]:
    """A unit of work for a job: commit at the end (then after-commit hooks), roll back on error."""
    async with session_scope(sessionmaker()) as session:
        yield session
