"""Engine, request-scoped sessions and after-commit hooks."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import structlog
from fastapi import Depends, Request
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from crm.config import Settings
from crm.core.errors import AppError
from crm.core.metrics import observe_pool

log = structlog.get_logger(__name__)

AfterCommit = Callable[..., Awaitable[Any] | Any]


def pgbouncer_connect_args() -> dict[str, Any]:
    """asyncpg options for PgBouncer in transaction pooling mode (before 1.21 it keeps no prepared
    statements of its own): no statement cache on either side, and each prepared statement under a
    unique name, since consecutive transactions of one client may run on different server
    connections and one server connection serves many clients."""
    return {
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": _unique_statement_name,
    }


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


def create_engine(
    settings: Settings, *, url: str | None = None, application_name: str = "crm", **overrides: Any
) -> AsyncEngine:
    """The application's engine on `url` (default `DATABASE_URL`); its pool is observed by the
    metrics (`crm.core.metrics.observe_pool`). `application_name` names its connections in
    `pg_stat_activity` (`crm-api`, `crm-worker`; `crm` for the command line)."""
    options: dict[str, Any] = {
        "pool_size": settings.database_pool_size,
        "max_overflow": settings.database_max_overflow,
        "pool_pre_ping": False,
        "pool_timeout": 8,
        "connect_args": {
            "timeout": settings.database_connect_timeout,
            "command_timeout": 60,
            "server_settings": {"application_name": application_name, "timezone": "UTC"},
        },
    }
    if settings.database_pgbouncer and (url is None or url == settings.database_url):
        options["connect_args"].update(pgbouncer_connect_args())
    options.update(overrides)
    engine = create_async_engine(url or settings.database_url, **options)
    observe_pool(engine)
    return engine


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def on_commit(session: AsyncSession, fn: AfterCommit, *args: Any) -> None:
    """Run `fn(*args)` after the session's transaction commits; dropped on rollback."""
    session.info.setdefault("on_commit", []).append((fn, args))


async def run_after_commit(session: AsyncSession) -> None:
    hooks = session.info.pop("on_commit", [])
    for fn, args in hooks:
        try:
            result = fn(*args)
            if hasattr(result, "__await__"):
                await result
        except Exception:  # a side effect must never undo a committed request
            log.exception("after_commit_failed", hook=getattr(fn, "__name__", repr(fn)))


@event.listens_for(AsyncSession.sync_session_class, "after_soft_rollback")
def _drop_hooks(session: Any, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:  # the outermost transaction rolled back
        session.info.pop("on_commit", None)


@asynccontextmanager
async def session_scope(
    maker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A unit of work: commit on success (then run hooks), roll back on error."""
    async with maker() as session:
        try:
            yield session
        except AppError as exc:
            if exc.persist:
                await session.commit()
                await run_after_commit(session)
            else:
                await session.rollback()
            raise
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()
            await run_after_commit(session)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's session; committed after the handler, before the response is sent."""
    async with session_scope(request.app.state.sessionmaker) as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
