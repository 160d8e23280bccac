"""The generic sync engine (SPEC §13): runs any provider's job page by page.

For each entity the engine asks the provider for pages since the saved cursor, maps every raw record,
upserts the page in bulk per target (`sinks.upsert`) and, in the same transaction, saves the page's
cursor and the job's counts and heartbeat. A crash therefore loses at most the page in flight: the next
run (a redelivered message or a later job) resumes from the last committed cursor, and re-upserting rows
creates no duplicates. Between pages the engine honours a cancel request. Every job ends `succeeded`,
`failed` (with a message safe to show) or `cancelled`; then one `synced` activity per target is written,
the integration's sync fields are updated, the organization's analytics cache is invalidated and the
`SYNC_FINISHED_HOOKS` run.

A job is owned by the process holding its PostgreSQL advisory lock (released by the server when that
process dies), so a redelivered message of a job still running elsewhere does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import structlog
from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from crm.activities.service import ActivityService
from crm.config import get_settings
from crm.core.cache import OrgCache
from crm.core.db import run_after_commit
from crm.core.redis import SafeRedis
from crm.integrations import sinks
from crm.integrations.base import BadRecord, Page, Provider, ProviderContext, ProviderError, SyncRecord
from crm.integrations.context import provider_context
from crm.integrations.crypto import CredentialsUnreadable
from crm.integrations.registry import UnknownProvider, get_provider
from crm.models import Integration, SyncCursor, SyncJob

log = structlog.get_logger(__name__)

#: Called with a session and the finished job (any terminal status) after the job's terminal status
#: was committed, each hook in a transaction of its own bounded by `HOOK_TIMEOUT` seconds, so a slow
#: or failing hook never keeps a job from ending. Other features register here (low-stock and
#: failed-sync alerts).
SyncFinishedHook = Callable[[AsyncSession, SyncJob], Awaitable[None]]
SYNC_FINISHED_HOOKS: list[SyncFinishedHook] = []
#: Time one finish hook may take (a statement timeout inside, a cancellation around).
HOOK_TIMEOUT = 120.0

#: Kept on the job; the count of failed records is always exact.
MAX_ERRORS = 1000
#: How often a running job's heartbeat is refreshed while a page is slow to come.
HEARTBEAT_SECONDS = 30.0
_LOCK_CLASS = 0x53594E43  # advisory lock namespace of sync jobs


class RetryLater(Exception):
    """The provider failed in a way worth retrying; the job is queued again, its cursor kept."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Cancelled(Exception):
    pass


class _Ended(Exception):
    """The job was moved to a terminal status by someone else while this run was going on."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


@dataclass
class _Run:
    job: SyncJob
    integration: Integration
    provider: Provider
    ctx: ProviderContext
    counts: dict[str, dict[str, int]]
    errors: list[dict[str, Any]]
    #: target → {created, updated, unchanged, failed} of this run, for the `synced` activities.
    per_target: dict[str, dict[str, int]] = field(default_factory=dict)
    saved_state: dict[str, Any] = field(default_factory=dict)


def _empty_counts() -> dict[str, int]:
    return {"fetched": 0, "created": 0, "updated": 0, "unchanged": 0, "failed": 0}


def safe_message(exc: BaseException) -> str:
    """What a failed job shows: provider messages are written to be shown; anything else is named by
    its type only (its text might carry a URL with credentials)."""
    if isinstance(exc, ProviderError | RetryLater):
        return exc.message[:1000]
    if isinstance(exc, UnknownProvider):
        return f"provider {exc.args[0]!r} is not installed"
    if isinstance(exc, CredentialsUnreadable):
        return "stored credentials cannot be decrypted; enter them again"
    if type(exc).__name__ == "SoftTimeLimitExceeded":
        return "the sync took longer than its time limit"
    return f"sync crashed: internal error ({type(exc).__name__})"


def _bind(maker: async_sessionmaker[AsyncSession]) -> Any:
    return maker.kw.get("bind")


@contextlib.asynccontextmanager
async def _job_lock(
    maker: async_sessionmaker[AsyncSession], job_id: int
) -> AsyncIterator[AsyncConnection | None]:
    """Hold the job's advisory lock on a connection of its own for the whole run; yields that
    connection (for heartbeats) or None when another process holds the lock. With a session bound to
    a single connection (tests) no separate connection is taken and the lock is not used."""
    bind = _bind(maker)
    if not isinstance(bind, AsyncEngine):
        yield None  # no separate connection: no lock, no background heartbeat
        return
    async with bind.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        key = job_id % 2**31
        got = await conn.scalar(select(func.pg_try_advisory_lock(_LOCK_CLASS, key)))
        if not got:
            raise _LockHeld
        try:
            yield conn
        finally:
            with contextlib.suppress(Exception):
                await conn.scalar(select(func.pg_advisory_unlock(_LOCK_CLASS, key)))


class _LockHeld(Exception):
    pass


async def _heartbeat(conn: AsyncConnection, job_id: int) -> None:
    while True:
        await asyncio.sleep(HEARTBEAT_SECONDS)
        with contextlib.suppress(Exception):
            await conn.execute(
                update(SyncJob)
                .where(SyncJob.id == job_id, SyncJob.status == "running")
                .values(heartbeat_at=func.now())
            )


async def run_sync_job(
    job_id: int,
    *,
    maker: async_sessionmaker[AsyncSession] | None = None,
    redis: SafeRedis | None = None,
    retry_allowed: bool = False,
    retry_in: float = 0.0,
) -> str:
    """Run (or resume) a job to a terminal state; returns its status.

    A job already terminal, or running in another process, is left alone (its status is returned).
    With `retry_allowed`, a retryable provider error puts the job back to `queued` and raises
    `RetryLater` for the caller (the Celery task) to retry in `retry_in` seconds; the cursor is kept.
    """
    if maker is None:
        from crm.worker.runtime import sessionmaker

        maker = sessionmaker()
    try:
        async with _job_lock(maker, job_id) as lock_conn:
            beat = asyncio.create_task(_heartbeat(lock_conn, job_id)) if lock_conn is not None else None
            try:
                return await _run_locked(job_id, maker, redis, retry_allowed, retry_in)
            finally:
                if beat is not None:
                    beat.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await beat
    except _LockHeld:
        log.info("sync_job_busy", job_id=job_id)
        async with maker() as session:
            status = await session.scalar(select(SyncJob.status).where(SyncJob.id == job_id))
        return status or "missing"


async def _claim(maker: async_sessionmaker[AsyncSession], job_id: int) -> SyncJob | None:
    async with maker() as session, session.begin():
        job = await session.scalar(
            update(SyncJob)
            .where(SyncJob.id == job_id, SyncJob.status.in_(("queued", "running")))
            .values(
                status="running",
                started_at=func.coalesce(SyncJob.started_at, func.now()),
                attempts=SyncJob.attempts + 1,
                heartbeat_at=func.now(),
                error=None,
            )
            .returning(SyncJob)
        )
        return job


async def _run_locked(
    job_id: int,
    maker: async_sessionmaker[AsyncSession],
    redis: SafeRedis | None,
    retry_allowed: bool,
    retry_in: float = 0.0,
) -> str:
    job = await _claim(maker, job_id)
    if job is None:
        async with maker() as session:
            status = await session.scalar(select(SyncJob.status).where(SyncJob.id == job_id))
        return status or "missing"
    log.info("sync_job_started", job_id=job.id, integration_id=job.integration_id, attempt=job.attempts)
    run: _Run | None = None
    status, error = "succeeded", None
    try:
        async with maker() as session:
            integration = await session.get(Integration, job.integration_id)
        if integration is None:  # pragma: no cover - the job is deleted with its integration
            raise UnknownProvider("(deleted integration)")
        provider = get_provider(integration.provider)
        ctx = provider_context(integration)
        run = _Run(
            job=job,
            integration=integration,
            provider=provider,
            ctx=ctx,
            counts={k: {**_empty_counts(), **v} for k, v in (job.counts or {}).items()},
            errors=list(job.errors or []),
            saved_state=dict(ctx.state),
        )
        try:
            entities = list(job.entities) or list(provider.entities)
            prepare = getattr(provider, "prepare", None)
            if prepare is not None:  # optional provider hook (base.py), in a transaction of its own
                async with maker() as session, session.begin():
                    await prepare(session, ctx, full=bool(job.full), entities=entities)
            for entity in entities:
                await _sync_entity(maker, run, entity)
        finally:
            with contextlib.suppress(Exception):
                await provider.aclose()
    except _Cancelled:
        status, error = "cancelled", "cancelled by user"
    except _Ended as ended:
        log.warning("sync_job_ended_elsewhere", job_id=job_id, status=ended.status)
        return ended.status
    except ProviderError as exc:
        if exc.retryable and retry_allowed:
            await _requeue(maker, job_id, run, exc.message, retry_in)
            raise RetryLater(exc.message) from exc
        status, error = "failed", safe_message(exc)
        log.warning("sync_job_provider_error", job_id=job_id, error=error, status=exc.status)
    except BaseException as exc:  # every job reaches a terminal state, whatever stopped it
        status, error = "failed", safe_message(exc)
        log.exception("sync_job_crashed", job_id=job_id, error=error)
        if not isinstance(exc, Exception) and type(exc).__name__ != "SoftTimeLimitExceeded":
            await _finish(maker, redis, job_id, run, status, error)
            raise
    await _finish(maker, redis, job_id, run, status, error)
    return status


async def _requeue(
    maker: async_sessionmaker[AsyncSession], job_id: int, run: _Run | None, message: str, retry_in: float
) -> None:
    due = datetime.now(UTC) + timedelta(seconds=retry_in)
    async with maker() as session, session.begin():
        await session.execute(
            update(SyncJob)
            .where(SyncJob.id == job_id, SyncJob.status == "running")
            .values(
                status="queued",
                error=f"will retry: {message}"[:1000],
                heartbeat_at=func.now(),
                # The retry message is due then: `sync.requeue_queued` leaves the job alone until
                # well after that.
                enqueued_at=due,
            )
        )
        if run is not None:
            await _save_state(session, run)


async def _save_state(session: AsyncSession, run: _Run) -> None:
    """Persist what the provider keeps between runs (a token) into the integration's settings."""
    if run.ctx.state == run.saved_state:
        return
    await session.execute(
        text(
            "UPDATE integration SET settings = jsonb_set(coalesce(settings, '{}'::jsonb), '{_state}', "
            "CAST(:state AS jsonb)) WHERE id = :id"
        ),
        {"state": orjson.dumps(run.ctx.state, default=str).decode(), "id": run.integration.id},
    )
    run.saved_state = dict(run.ctx.state)


async def _saved_cursor(maker: async_sessionmaker[AsyncSession], run: _Run, entity: str) -> str | None:
    async with maker() as session:
        row = (
            await session.execute(
                select(SyncCursor.cursor, SyncCursor.job_id).where(
                    SyncCursor.integration_id == run.integration.id, SyncCursor.entity == entity
                )
            )
        ).first()
    if row is None:
        return None
    cursor: str | None = row[0]
    written_by: int | None = row[1]
    if run.job.full and written_by != run.job.id:
        return None  # a full sync starts over, unless this very job already got that far
    return cursor


#: Mapping yields to the event loop after this many records, so that the database's answer, the next
#: request and the budget's Redis calls are served while a large page is being mapped.
MAP_SLICE = 250


@dataclass(slots=True)
class _Mapped:
    """A fetched page mapped and staged for writing (CPU work done ahead of the write)."""

    page: Page
    staged: list[sinks.Staged]
    failed: int
    #: (external id, message) of records that could not be mapped.
    errors: list[tuple[str | None, str]]


async def _map_page(run: _Run, entity: str, page: Page) -> _Mapped:
    by_target: dict[str, list[SyncRecord]] = {}
    errors: list[tuple[str | None, str]] = []
    for n, raw in enumerate(page.records, 1):
        if n % MAP_SLICE == 0:
            await asyncio.sleep(0)
        try:
            if not isinstance(raw, dict):
                raise BadRecord("record is not an object")
            record = run.provider.map_record(entity, raw)
        except BadRecord as exc:
            external_id = exc.external_id
            if external_id is None and isinstance(raw, dict):
                candidate = raw.get("id")
                external_id = str(candidate)[:100] if candidate is not None else None
            errors.append((external_id, exc.message))
            continue
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            candidate = raw.get("id") if isinstance(raw, dict) else None
            external_id = str(candidate)[:100] if candidate is not None else None
            errors.append((external_id, f"record cannot be read ({type(exc).__name__})"))
            continue
        by_target.setdefault(record.target, []).append(record)
    staged = []
    for target, records in by_target.items():
        await asyncio.sleep(0)
        staged.append(sinks.stage(target, records))
    return _Mapped(page=page, staged=staged, failed=len(errors), errors=errors)


async def _mapped_pages(
    run: _Run, entity: str, pages: AsyncIterator[Page], *, ahead: bool
) -> AsyncGenerator[_Mapped, None]:
    """The provider's pages, mapped. With `ahead`, one page ahead: page N+1 is fetched, mapped and
    staged while the caller writes page N (the database works in its own process meanwhile).
    Without it (a session maker bound to a single connection, as in tests), strictly in turn."""
    if not ahead:
        async for page in pages:
            yield await _map_page(run, entity, page)
            if page.last:
                return
        return
    queue: asyncio.Queue[_Mapped | BaseException | None] = asyncio.Queue(maxsize=1)

    async def produce() -> None:
        try:
            async for page in pages:
                await queue.put(await _map_page(run, entity, page))
                if page.last:
                    break
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the writer, which raises it in its place
            await queue.put(exc)
            return
        await queue.put(None)

    producer = asyncio.create_task(produce())
    try:
        while True:
            item = await queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        if not producer.done():
            producer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await producer


def _add_error(run: _Run, entity: str, external_id: str | None, message: str) -> None:
    if len(run.errors) < MAX_ERRORS:
        run.errors.append({"entity": entity, "external_id": external_id, "message": str(message)[:500]})


class _Seen:
    """Keys of the records a snapshot entity stored in this run, spooled to a temporary file so that
    memory does not grow with the number of rows."""

    def __init__(self, targets: tuple[str, ...]) -> None:
        self.targets = targets
        self.complete = True  # False once a record failed: its row is then neither known nor removed
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed in `close`

    def add(self, target: str, keys: list[str]) -> None:
        if keys:
            self._file.write(b"".join(orjson.dumps([target, key]) + b"\n" for key in keys))

    def chunks(self, target: str, size: int = 50_000) -> Iterator[list[str]]:
        self._file.seek(0)
        chunk: list[str] = []
        for line in self._file:
            name, key = orjson.loads(line)
            if name == target:
                chunk.append(key)
                if len(chunk) >= size:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk

    def close(self) -> None:
        self._file.close()


async def _sweep(session: AsyncSession, run: _Run, entity: str, seen: _Seen) -> None:
    """After a complete snapshot: remove the rows of its targets that it no longer delivered."""
    for target in seen.targets:
        removed = await sinks.sweep(
            session,
            organization_id=run.job.organization_id,
            source=run.integration.provider,
            target_name=target,
            keys=seen.chunks(target),
        )
        if removed:
            tally = run.per_target.setdefault(
                target, {"created": 0, "updated": 0, "unchanged": 0, "failed": 0}
            )
            tally["deleted"] = tally.get("deleted", 0) + removed
            log.info("sync_snapshot_swept", job_id=run.job.id, entity=entity, target=target, removed=removed)


async def _sync_entity(maker: async_sessionmaker[AsyncSession], run: _Run, entity: str) -> None:
    counts = run.counts.setdefault(entity, _empty_counts())
    snapshot: dict[str, tuple[str, ...]] = getattr(run.provider, "snapshot_entities", None) or {}
    seen = _Seen(tuple(snapshot[entity])) if entity in snapshot else None
    # A snapshot is complete only when read from its start in one go.
    cursor = None if seen is not None else await _saved_cursor(maker, run, entity)
    job_id = run.job.id
    pages = run.provider.fetch(run.ctx, entity, cursor)
    mapped_pages = _mapped_pages(run, entity, pages, ahead=isinstance(_bind(maker), AsyncEngine))
    try:
        async for mapped in mapped_pages:
            page, failed = mapped.page, mapped.failed
            for external_id, message in mapped.errors:
                _add_error(run, entity, external_id, message)
            if seen is not None and failed:
                seen.complete = False
            async with maker() as session, session.begin():
                state = (
                    await session.execute(
                        select(SyncJob.cancel_requested, SyncJob.status).where(SyncJob.id == job_id)
                    )
                ).one()
                if state.status != "running":  # ended from outside (the reaper): store nothing more
                    raise _Ended(state.status)
                if state.cancel_requested:
                    raise _Cancelled
                created = updated = 0
                for staged in mapped.staged:
                    target, records = staged.target_name, staged.records
                    result = await sinks.write(
                        session,
                        organization_id=run.job.organization_id,
                        source=run.integration.provider,
                        staged=staged,
                    )
                    for record, message in result.failed:
                        _add_error(run, entity, record.external_id, message)
                    if seen is not None:
                        if result.failed:
                            seen.complete = False
                        seen.add(target, [r.external_id for r in records])
                    good = len(records) - len(result.failed)
                    tally = run.per_target.setdefault(
                        target, {"created": 0, "updated": 0, "unchanged": 0, "failed": 0}
                    )
                    tally["created"] += result.created
                    tally["updated"] += result.updated
                    tally["unchanged"] += good - result.created - result.updated
                    tally["failed"] += len(result.failed)
                    failed += len(result.failed)
                    created += result.created
                    updated += result.updated
                fetched = len(page.records)
                counts["fetched"] += fetched
                counts["created"] += created
                counts["updated"] += updated
                counts["failed"] += failed
                counts["unchanged"] += fetched - failed - created - updated
                await session.execute(
                    pg_insert(SyncCursor)
                    .values(
                        integration_id=run.integration.id,
                        entity=entity,
                        organization_id=run.job.organization_id,
                        cursor=page.cursor,
                        job_id=job_id,
                    )
                    .on_conflict_do_update(
                        index_elements=["integration_id", "entity"],
                        set_={"cursor": page.cursor, "job_id": job_id, "updated_at": func.now()},
                    )
                )
                await session.execute(
                    update(SyncJob)
                    .where(SyncJob.id == job_id)
                    .values(counts=run.counts, errors=run.errors, heartbeat_at=func.now())
                )
                await _save_state(session, run)
                if page.last and seen is not None and seen.complete:
                    await _sweep(session, run, entity, seen)
            if page.last:
                break
    finally:
        if seen is not None:
            seen.close()
        await mapped_pages.aclose()
        aclose = getattr(pages, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()


async def _finish(
    maker: async_sessionmaker[AsyncSession],
    redis: SafeRedis | None,
    job_id: int,
    run: _Run | None,
    status: str,
    error: str | None,
) -> None:
    """Terminal state, activities and integration fields in one transaction; after its commit the
    finish hooks (each bounded in time), then the cache."""
    job = await _commit_terminal(maker, job_id, run, status, error, from_statuses=("running",))
    if job is None:  # finished (reaped or cancelled) meanwhile
        return
    log.info("sync_job_finished", job_id=job_id, status=status, error=error)
    await run_finish_hooks(maker, job_id)
    if run is not None and run.per_target:
        await _bump_cache(redis, job.organization_id)


async def _commit_terminal(
    maker: async_sessionmaker[AsyncSession],
    job_id: int,
    run: _Run | None,
    status: str,
    error: str | None,
    *,
    from_statuses: tuple[str, ...],
) -> SyncJob | None:
    """Move an active job to its terminal status and commit; None when it was not active."""
    now = datetime.now(UTC)
    async with maker() as session, session.begin():
        job = await session.scalar(
            update(SyncJob)
            .where(SyncJob.id == job_id, SyncJob.status.in_(from_statuses))
            .values(status=status, error=error, finished_at=now, heartbeat_at=now)
            .returning(SyncJob)
        )
        if job is None:
            return None
        integration = await session.get(Integration, job.integration_id)
        if integration is not None:
            values: dict[str, Any] = {"last_sync_at": now, "last_sync_status": status}
            if integration.enabled:
                values["next_sync_at"] = now + timedelta(minutes=max(integration.sync_interval_minutes, 1))
            await session.execute(
                update(Integration).where(Integration.id == integration.id).values(**values)
            )
        if run is not None:
            await _save_state(session, run)
            activities = ActivityService(session, job.organization_id, job.created_by_id)
            for target, tally in run.per_target.items():
                activities.record(
                    target,
                    None,
                    "synced",
                    payload={
                        "job_id": job.id,
                        "integration_id": job.integration_id,
                        "provider": run.integration.provider,
                        "status": status,
                        **tally,
                    },
                )
    return job


async def run_finish_hooks(
    maker: async_sessionmaker[AsyncSession], job_id: int, *, limit: float | None = None
) -> list[str]:
    """Run `SYNC_FINISHED_HOOKS` for a terminal job, each in a transaction of its own with a
    statement timeout and a cancellation after `limit` seconds (default `HOOK_TIMEOUT`). A hook that
    fails or overruns is logged and rolled back; the others still run. Returns the names of the
    hooks that completed."""
    limit = HOOK_TIMEOUT if limit is None else limit
    done: list[str] = []
    for hook in list(SYNC_FINISHED_HOOKS):
        name = getattr(hook, "__name__", repr(hook))
        started = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(limit + 5), maker() as session:
                async with session.begin():
                    job = await session.get(SyncJob, job_id)
                    if job is None or job.status not in ("succeeded", "failed", "cancelled"):
                        return done
                    previous = await session.scalar(text("SELECT current_setting('statement_timeout')"))
                    await session.execute(
                        text("SELECT set_config('statement_timeout', :ms, true)"),
                        {"ms": str(int(limit * 1000))},
                    )
                    await hook(session, job)
                    await session.execute(
                        text("SELECT set_config('statement_timeout', :ms, true)"), {"ms": previous}
                    )
                await run_after_commit(session)  # what the hook queued (a job sent to a worker)
        except Exception as exc:  # TimeoutError and the server's statement timeout included
            log.warning(
                "sync_finished_hook_failed",
                job_id=job_id,
                hook=name,
                error=type(exc).__name__,
                seconds=round(asyncio.get_running_loop().time() - started, 1),
                exc_info=not isinstance(exc, TimeoutError),
            )
        else:
            done.append(name)
    return done


async def _bump_cache(redis: SafeRedis | None, organization_id: int) -> None:
    own = redis is None
    if redis is None:
        settings = get_settings()
        redis = SafeRedis.from_url(settings.redis_url, settings.redis_timeout)
    try:
        await OrgCache(redis, 0).bump(organization_id)
    finally:
        if own:
            with contextlib.suppress(Exception):
                await redis.client.aclose()


async def fail_job(maker: async_sessionmaker[AsyncSession], job_id: int, reason: str) -> bool:
    """Mark an active job failed from outside (the reaper) and commit at once. The finish hooks are
    not run here: the caller runs them afterwards (`run_finish_hooks`), so that however long they
    take, the job is already terminal. False when the job was not active any more."""
    job = await _commit_terminal(maker, job_id, None, "failed", reason, from_statuses=("queued", "running"))
    if job is None:
        return False
    log.info("sync_job_finished", job_id=job_id, status="failed", error=reason)
    return True
