"""The body of an import job: read the upload, validate every row, write in chunks, report progress.

Without `atomic` each chunk commits on its own, together with the job's checkpoint (rows read, counts,
errors): a job redelivered after its worker died continues after the last committed chunk with the
counts it had, so its final counts are those of one uninterrupted run. With `atomic` or `dry_run` every
chunk runs in one transaction that is rolled back when a row failed (atomic) or always (dry run), so a
dry run reports exactly what the real run would do; such a job starts again from the first row.

A job is owned by the process holding its PostgreSQL advisory lock (on a connection of its own, which
also carries the heartbeat): a second delivery of a job that is being run leaves it alone, and one of a
`running` job whose lock is free (its worker died) resumes it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from crm.activities.service import ActivityService
from crm.config import get_settings
from crm.core.cache import invalidate_after_commit
from crm.core.db import run_after_commit, session_scope
from crm.core.redis import SafeRedis
from crm.imports.columns import MappingError, resolve_columns
from crm.imports.handlers import HANDLERS, Context, Handler, Outcome, Row
from crm.imports.reader import FileTooLarge, Format, Sheet, UnreadableFile, open_sheet
from crm.models import ImportJob, ImportUpload
from crm.outbox.service import emit

log = structlog.get_logger(__name__)

CHUNK_ROWS = 5000
#: Per-row errors kept on the job; `failed` still counts every failed row.
MAX_ERRORS = 1000

Progress = Callable[[ImportJob], None]

#: Advisory lock namespace of import jobs ("IMPO").
LOCK_CLASS = 0x494D504F
#: How often a running job's lock connection stamps `heartbeat_at`.
HEARTBEAT_SECONDS = 10.0
OUT_OF_MEMORY = "the file needs more memory than the worker has; rows already committed stay"
#: Deliveries that may start a job: one whose worker keeps dying on it (a file that exhausts the
#: worker's memory, say) is failed instead of being redelivered for ever.
MAX_ATTEMPTS = 3


class JobFailed(Exception):
    """The whole job cannot run (unreadable file, bad mapping); its message goes to `job.error`."""


def lock_key(job_id: int) -> int:
    return job_id % 2**31


@contextlib.asynccontextmanager
async def _job_lock(maker: async_sessionmaker[AsyncSession], job_id: int) -> AsyncIterator[bool]:
    """Hold the job's advisory lock on a connection of its own for the whole run, and stamp the job's
    heartbeat from it; yields False when another process holds the lock. With sessions bound to one
    connection (the tests' transaction) there is no separate connection: no lock, no heartbeat."""
    bind = maker.kw.get("bind")
    if not isinstance(bind, AsyncEngine):
        yield True
        return
    async with bind.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        got = await conn.scalar(select(func.pg_try_advisory_lock(LOCK_CLASS, lock_key(job_id))))
        if not got:
            yield False
            return
        beat = asyncio.create_task(_heartbeat(conn, job_id))
        try:
            yield True
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
            with contextlib.suppress(Exception):
                await conn.scalar(select(func.pg_advisory_unlock(LOCK_CLASS, lock_key(job_id))))


async def _heartbeat(conn: AsyncConnection, job_id: int) -> None:
    while True:
        await asyncio.sleep(HEARTBEAT_SECONDS)
        with contextlib.suppress(Exception):
            await conn.execute(
                update(ImportJob)
                .where(ImportJob.id == job_id, ImportJob.status == "running")
                .values(heartbeat_at=func.now())
            )


async def run_import(
    job_id: int,
    *,
    maker: async_sessionmaker[AsyncSession],
    redis: SafeRedis | None = None,
    progress: Progress | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> ImportJob | None:
    """Run a queued import job to its end, or resume one whose worker died; returns the finished job
    (None when it is gone, finished, or being run by another process)."""
    async with _job_lock(maker, job_id) as owned:
        if not owned:
            log.info("import_already_running", job_id=job_id)
            return None
        return await _run_owned(job_id, maker, redis, progress, chunk_rows)


async def _run_owned(
    job_id: int,
    maker: async_sessionmaker[AsyncSession],
    redis: SafeRedis | None,
    progress: Progress | None,
    chunk_rows: int,
) -> ImportJob | None:
    outcome = Outcome(max_errors=MAX_ERRORS)
    async with session_scope(maker) as db:
        job = await db.get(ImportJob, job_id, with_for_update=True)
        if job is None or job.status not in ("queued", "running"):
            return None
        now = datetime.now(UTC)
        if job.attempts >= MAX_ATTEMPTS:
            reason = f"the worker running this import stopped {job.attempts} times; the import was given up"
            await _fail_locked(db, job, reason, now)
            log.warning("import_given_up", job_id=job_id, attempts=job.attempts)
            return job
        resume = job.status == "running" and not (job.atomic or job.dry_run)
        if resume:
            # Its worker died: the committed chunks stay, and so do their counts.
            _restore(job, outcome)
            log.warning("import_resumed", job_id=job_id, after_rows=job.processed_rows)
        else:
            # New, or an atomic/dry run whose single transaction died with its worker: from the start.
            job.processed_rows = job.created = job.updated = job.skipped = job.failed = 0
            job.errors, job.counts_by_type = [], {}
        job.status = "running"
        job.started_at = job.started_at if resume and job.started_at else now
        job.heartbeat_at = now
        job.attempts += 1
        job.error = None
        content = await db.scalar(select(ImportUpload.content).where(ImportUpload.job_id == job_id))
    skip = job.processed_rows if resume else 0

    own_redis = redis is None
    if redis is None:
        settings = get_settings()
        redis = SafeRedis.from_url(settings.redis_url, settings.redis_timeout)
    try:
        if content is None:
            raise JobFailed("the uploaded file is gone")
        final = await _run(job, content, maker, redis, outcome, progress, chunk_rows, skip)
    except JobFailed as exc:
        final = "failed"
        job.error = str(exc)[:1000]
    except MemoryError:
        log.warning("import_out_of_memory", job_id=job_id)
        final = "failed"
        job.error = OUT_OF_MEMORY
    except Exception:
        log.exception("import_failed", job_id=job_id)
        final = "failed"
        job.error = "the import stopped on an unexpected error; rows already committed stay"
    finally:
        if own_redis:
            await redis.close()
    return await _finish(maker, job, outcome, final, progress)


def _restore(job: ImportJob, outcome: Outcome) -> None:
    """The outcome as of the job's last committed chunk."""
    outcome.created, outcome.updated, outcome.skipped, outcome.failed = (
        job.created,
        job.updated,
        job.skipped,
        job.failed,
    )
    outcome.errors = list(job.errors or [])
    by_type = job.counts_by_type or {}
    outcome.created_by_type = defaultdict(int, by_type.get("created", {}))
    outcome.updated_by_type = defaultdict(int, by_type.get("updated", {}))


async def _run(
    job: ImportJob,
    content: bytes,
    maker: async_sessionmaker[AsyncSession],
    redis: SafeRedis,
    outcome: Outcome,
    progress: Progress | None,
    chunk_rows: int,
    skip: int = 0,
) -> str:
    file_format: Format = "xlsx" if job.file_format == "xlsx" else "csv"
    max_unzipped = get_settings().import_max_unzipped_bytes
    try:
        # Parsing starts in a thread (openpyxl may read the whole sheet to size it): the loop keeps
        # the heartbeat going meanwhile. The workbook is checked again before openpyxl opens it.
        sheet: Sheet = await asyncio.to_thread(open_sheet, content, file_format, max_unzipped=max_unzipped)
        columns = resolve_columns(job.entity, sheet.headers, job.mapping or {})
    except FileTooLarge as exc:
        raise JobFailed(str(exc)) from None
    except (UnreadableFile, MappingError) as exc:
        raise JobFailed(str(exc)) from None
    del content
    headers = {name: sheet.headers[index] for index, name in columns.items()}
    ctx = Context(job.organization_id, job.user_id, job.on_conflict, headers, outcome)
    handler = HANDLERS[job.entity](ctx)
    job.total_rows = max(sheet.estimated_rows, skip)
    await _save_progress(maker, job, outcome, progress)

    single = job.atomic or job.dry_run
    data: AsyncSession | None = None
    if single:
        data = maker()
        await data.begin()
    try:
        if data is not None:
            await _prepare(handler, data)
        else:
            async with session_scope(maker) as db:
                await _prepare(handler, db)

        reader = _ChunkReader(handler, sheet.rows, columns, headers, chunk_rows, skip)
        # Chunk N+1 is read and validated in a thread while chunk N is written: the writing mostly
        # waits on PostgreSQL, so the two overlap.
        chunk = await _read(reader)
        if chunk is not None:
            for error in chunk.rejected:
                outcome.error(*error)
        while chunk is not None:
            following = asyncio.ensure_future(_read(reader)) if not reader.done else None
            done_before = job.processed_rows
            try:
                job.processed_rows = chunk.processed
                job.total_rows = max(job.total_rows, chunk.processed)
                if data is not None:
                    await _write_single(handler, chunk.rows, data)
                    await _save_progress(maker, job, outcome, progress)
                else:
                    await _write_chunk(handler, chunk.rows, maker, redis, job, outcome)
                    if progress is not None:
                        progress(job)
            except BaseException:
                job.processed_rows = done_before
                if following is not None:
                    await asyncio.gather(following, return_exceptions=True)
                raise
            chunk = await following if following is not None else None
            if chunk is not None:
                for error in chunk.rejected:
                    outcome.error(*error)
        processed = reader.processed
        job.processed_rows = job.total_rows = processed

        failed_atomic = job.atomic and outcome.failed > 0
        if data is not None:
            if job.dry_run or failed_atomic:
                await data.rollback()
                await data.close()
                data = None
            else:
                _activities(data, job, outcome)
                invalidate_after_commit(data, redis, job.organization_id)
                await data.commit()
                await run_after_commit(data)
        if failed_atomic:
            outcome.created = outcome.updated = outcome.skipped = 0
            return "failed"
        return "succeeded"
    finally:
        if data is not None:
            await data.rollback()
            await data.close()


async def _prepare(handler: Handler, db: AsyncSession) -> None:
    try:
        await handler.prepare(db)
    except ValueError as exc:
        raise JobFailed(str(exc)) from None


def _cell(raw: list[str | None], index: int) -> str | None:
    return raw[index] if index < len(raw) else None


@dataclass
class _Chunk:
    rows: list[Row]
    #: Errors of the chunk's invalid rows, in row order (added to the outcome once the previous chunk
    #: is written, so errors keep the file's order).
    rejected: list[tuple[int, str | None, str]]
    #: Rows read up to the end of this chunk (empty rows not counted).
    processed: int


class _ChunkReader:
    """Reads and validates the sheet chunk by chunk (with the check for a key seen twice)."""

    def __init__(
        self,
        handler: Handler,
        rows: Iterator[tuple[int, list[str | None]]],
        columns: dict[int, str],
        headers: dict[str, str],
        chunk_rows: int,
        skip: int = 0,
    ) -> None:
        self.handler, self.rows, self.columns, self.chunk_rows = handler, rows, columns, chunk_rows
        self.key_column = headers.get(handler.spec.natural_key)
        self.seen: dict[Any, int] = {}
        self.processed = 0
        self.done = False
        self.skip = skip

    def _skip_done_rows(self) -> None:
        """A resumed job passes over the rows its earlier delivery committed, validating them again
        only to know their keys (a key repeated later in the file still fails as "the same key")."""
        handler, columns, seen = self.handler, self.columns, self.seen
        try:
            while self.processed < self.skip:
                item = next(self.rows, None)
                if item is None:
                    break
                number, raw = item
                self.processed += 1
                row = handler.clean(number, {name: _cell(raw, index) for index, name in columns.items()})
                if row is not None and row.key is not None:
                    seen.setdefault(row.key, number)
        except UnreadableFile as exc:
            raise JobFailed(str(exc)) from None
        handler.take_rejected()  # reported by the earlier delivery
        self.skip = 0

    def next_chunk(self) -> _Chunk | None:
        """The next chunk of valid rows; None when the sheet is exhausted."""
        if self.skip:
            self._skip_done_rows()
        handler, columns, seen = self.handler, self.columns, self.seen
        chunk: list[Row] = []
        count = 0
        try:
            for number, raw in self.rows:
                count += 1
                row = handler.clean(number, {name: _cell(raw, index) for index, name in columns.items()})
                if row is not None and row.key is not None:
                    first = seen.setdefault(row.key, number)
                    if first != number:
                        handler.invalid(number, self.key_column, f"the same key as row {first}")
                        row = None
                if row is not None:
                    chunk.append(row)
                if count == self.chunk_rows:
                    break
            else:
                self.done = True
        except UnreadableFile as exc:
            raise JobFailed(str(exc)) from None
        self.processed += count
        if count == 0:
            return None
        return _Chunk(chunk, handler.take_rejected(), self.processed)


async def _read(reader: _ChunkReader) -> _Chunk | None:
    return await asyncio.to_thread(reader.next_chunk)


async def _write_single(handler: Handler, chunk: list[Row], data: AsyncSession) -> None:
    """A chunk of an atomic or dry run, in the job's one transaction."""
    if chunk:
        await handler.write(data, chunk)
        data.expunge_all()


@dataclass
class _Counts:
    """The outcome's counts before a chunk (put back when the chunk's transaction is rolled back)."""

    created: int
    updated: int
    skipped: int
    failed: int
    errors: int
    failed_rows: set[int]
    created_by_type: dict[str, int]
    updated_by_type: dict[str, int]

    @classmethod
    def of(cls, outcome: Outcome) -> _Counts:
        return cls(
            outcome.created,
            outcome.updated,
            outcome.skipped,
            outcome.failed,
            len(outcome.errors),
            set(outcome.failed_rows),
            dict(outcome.created_by_type),
            dict(outcome.updated_by_type),
        )

    def restore(self, outcome: Outcome) -> None:
        outcome.created, outcome.updated, outcome.skipped, outcome.failed = (
            self.created,
            self.updated,
            self.skipped,
            self.failed,
        )
        del outcome.errors[self.errors :]
        outcome.failed_rows = self.failed_rows
        outcome.created_by_type = defaultdict(int, self.created_by_type)
        outcome.updated_by_type = defaultdict(int, self.updated_by_type)


async def _write_chunk(
    handler: Handler,
    chunk: list[Row],
    maker: async_sessionmaker[AsyncSession],
    redis: SafeRedis,
    job: ImportJob,
    outcome: Outcome,
) -> None:
    """A chunk of a chunked run and the job's checkpoint, in one transaction: the rows it stored and
    the counts that say so commit together (a redelivered job resumes from exactly there)."""
    before = _Counts.of(outcome)
    try:
        async with session_scope(maker) as db:
            # Chunk and progress commits do not wait for their WAL flush (PostgreSQL's WAL writer
            # flushes it within a moment): the job's final status is committed synchronously, which
            # flushes every earlier commit too, so a finished job is durable. A database crash mid-job
            # can lose the last chunks' commits (with their checkpoint), never a part of one.
            await db.execute(text("SET LOCAL synchronous_commit = off"))
            if chunk:
                await handler.write(db, chunk)
                invalidate_after_commit(db, redis, job.organization_id)
            _apply_counts(job, outcome)
            await db.execute(
                update(ImportJob)
                .where(ImportJob.id == job.id)
                .values(**_progress(job), heartbeat_at=func.now())
            )
    except BaseException:
        before.restore(outcome)
        _apply_counts(job, outcome)
        raise


def _activities(db: AsyncSession, job: ImportJob, outcome: Outcome) -> None:
    """One `imported` activity per entity type the job wrote (SPEC §19.7)."""
    activities = ActivityService(db, job.organization_id, job.user_id)
    kinds = set(outcome.created_by_type) | set(outcome.updated_by_type)
    for entity_type in sorted(kinds):
        created = outcome.created_by_type.get(entity_type, 0)
        updated = outcome.updated_by_type.get(entity_type, 0)
        if created or updated:
            activities.record(
                entity_type,
                None,
                "imported",
                payload={
                    "import_job_id": job.id,
                    "file_name": job.file_name,
                    "created": created,
                    "updated": updated,
                },
            )


def _counts(job: ImportJob, *more: str) -> dict[str, Any]:
    """The job's progress columns (rows read and the counts), and `more` of them."""
    names = ("total_rows", "processed_rows", "created", "updated", "skipped", "failed", *more)
    return {name: getattr(job, name) for name in names}


def _progress(job: ImportJob) -> dict[str, Any]:
    """The job's columns a checkpoint stores: rows read, the counts and the errors."""
    return _counts(job, "errors", "counts_by_type")


def _apply_counts(job: ImportJob, outcome: Outcome) -> None:
    job.created, job.updated, job.skipped, job.failed = (
        outcome.created,
        outcome.updated,
        outcome.skipped,
        outcome.failed,
    )
    job.errors = list(outcome.errors)
    job.counts_by_type = {
        "created": {k: v for k, v in outcome.created_by_type.items() if v},
        "updated": {k: v for k, v in outcome.updated_by_type.items() if v},
    }


async def _save_progress(
    maker: async_sessionmaker[AsyncSession], job: ImportJob, outcome: Outcome, progress: Progress | None
) -> None:
    _apply_counts(job, outcome)
    async with session_scope(maker) as db:
        await db.execute(text("SET LOCAL synchronous_commit = off"))  # see `_write`
        await db.execute(update(ImportJob).where(ImportJob.id == job.id).values(**_counts(job)))
    if progress is not None:
        progress(job)


async def _finish(
    maker: async_sessionmaker[AsyncSession],
    job: ImportJob,
    outcome: Outcome,
    status: str,
    progress: Progress | None,
) -> ImportJob:
    """Store the outcome, write the activities of a chunked run and drop the upload."""
    _apply_counts(job, outcome)
    job.status = status
    job.finished_at = datetime.now(UTC)
    async with session_scope(maker) as db:
        if not (job.atomic or job.dry_run):
            _activities(db, job, outcome)
        if not job.dry_run:
            emit(
                db,
                job.organization_id,
                "import.finished",
                entity_type="import",
                entity_id=job.id,
                actor_id=job.user_id,
                data={
                    "id": job.id,
                    "status": status,
                    "entity": job.entity,
                    "created": dict(outcome.created_by_type),
                    "updated": dict(outcome.updated_by_type),
                    "failed": outcome.failed,
                },
            )
        await db.execute(
            update(ImportJob)
            .where(ImportJob.id == job.id)
            .values(
                **_progress(job),
                status=job.status,
                error=job.error,
                started_at=job.started_at,
                finished_at=job.finished_at,
                heartbeat_at=job.finished_at,
            )
        )
        await db.execute(delete(ImportUpload).where(ImportUpload.job_id == job.id))
    if progress is not None:
        progress(job)
    return job


async def _fail_locked(db: AsyncSession, job: ImportJob, reason: str, now: datetime) -> None:
    """Fail an active job whose row is locked in `db`: the counts of its committed chunks stay, the
    activities of what it wrote are recorded, the upload goes."""
    outcome = Outcome(max_errors=MAX_ERRORS)
    if not (job.atomic or job.dry_run):
        _restore(job, outcome)
        _activities(db, job, outcome)
    else:
        job.created = job.updated = job.skipped = 0
    job.status, job.error, job.finished_at, job.heartbeat_at = "failed", reason[:1000], now, now
    await db.execute(delete(ImportUpload).where(ImportUpload.job_id == job.id))


async def fail_job(maker: async_sessionmaker[AsyncSession], job_id: int, reason: str) -> bool:
    """Fail a queued or running job from outside (the reaper) unless a process holds it; True when
    it was failed."""
    async with _job_lock(maker, job_id) as owned:
        if not owned:
            return False
        async with session_scope(maker) as db:
            job = await db.get(ImportJob, job_id, with_for_update=True)
            if job is None or job.status not in ("queued", "running"):
                return False
            await _fail_locked(db, job, reason, datetime.now(UTC))
    return True


async def lock_free(maker: async_sessionmaker[AsyncSession], job_id: int) -> bool:
    """True when no process holds the job's lock (nobody is running it)."""
    bind = maker.kw.get("bind")
    if not isinstance(bind, AsyncEngine):
        return True
    async with bind.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        got = await conn.scalar(select(func.pg_try_advisory_lock(LOCK_CLASS, lock_key(job_id))))
        if got:
            await conn.scalar(select(func.pg_advisory_unlock(LOCK_CLASS, lock_key(job_id))))
        return bool(got)
