"""Engine, request-scoped sessions and after-commit hooks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import structlog
from fastapi import Depends, Request
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from crm.config import Settings
from crm.core.errors import AppError

log = structlog.get_logger(__name__)

AfterCommit = Callable[..., Awaitable[Any] | Any]


def create_engine(settings: Settings, **overrides: Any) -> AsyncEngine:
    options: dict[str, Any] = {
        "pool_size": settings.database_pool_size,
        "max_overflow": settings.database_max_overflow,
        "pool_pre_ping": False,
        "pool_timeout": 8,
        "connect_args": {
            "timeout": settings.database_connect_timeout,
            "command_timeout": 60,
            "server_settings": {"application_name": "crm", "timezone": "UTC"},
        },
    }
    options.update(overrides)
    return create_async_engine(settings.database_url, **options)


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
