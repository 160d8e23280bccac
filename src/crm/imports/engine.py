"""The body of an import job: read the upload, validate every row, write in chunks, report progress.

Without `atomic` each chunk commits on its own (a crash keeps what was done; a re-run changes nothing
more, imports being idempotent by natural key). With `atomic` or `dry_run` every chunk runs in one
transaction that is rolled back when a row failed (atomic) or always (dry run), so a dry run reports
exactly what the real run would do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.activities.service import ActivityService
from crm.config import get_settings
from crm.core.cache import invalidate_after_commit
from crm.core.db import run_after_commit, session_scope
from crm.core.redis import SafeRedis
from crm.imports.columns import MappingError, resolve_columns
from crm.imports.handlers import HANDLERS, Context, Handler, Outcome, Row
from crm.imports.reader import Format, UnreadableFile, open_sheet
from crm.models import ImportJob, ImportUpload
from crm.outbox.service import emit

log = structlog.get_logger(__name__)

CHUNK_ROWS = 5000
#: Per-row errors kept on the job; `failed` still counts every failed row.
MAX_ERRORS = 1000

Progress = Callable[[ImportJob], None]


class JobFailed(Exception):
    """The whole job cannot run (unreadable file, bad mapping); its message goes to `job.error`."""


async def run_import(
    job_id: int,
    *,
    maker: async_sessionmaker[AsyncSession],
    redis: SafeRedis | None = None,
    progress: Progress | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> ImportJob | None:
    """Run a queued import job to its end; returns the finished job (None when it is gone or done)."""
    async with session_scope(maker) as db:
        job = await db.get(ImportJob, job_id, with_for_update=True)
        if job is None or job.status not in ("queued", "running"):
            return None
        # A job found `running` was interrupted (its worker died): it runs again from the start.
        job.status = "running"
        job.started_at = datetime.now(UTC)
        job.processed_rows = job.created = job.updated = job.skipped = job.failed = 0
        job.errors, job.error = [], None
        content = await db.scalar(select(ImportUpload.content).where(ImportUpload.job_id == job_id))

    own_redis = redis is None
    if redis is None:
        settings = get_settings()
        redis = SafeRedis.from_url(settings.redis_url, settings.redis_timeout)
    outcome = Outcome(max_errors=MAX_ERRORS)
    try:
        if content is None:
            raise JobFailed("the uploaded file is gone")
        final = await _run(job, content, maker, redis, outcome, progress, chunk_rows)
    except JobFailed as exc:
        final = "failed"
        job.error = str(exc)[:1000]
    except Exception:
        log.exception("import_failed", job_id=job_id)
        final = "failed"
        job.error = "the import stopped on an unexpected error; rows already committed stay"
    finally:
        if own_redis:
            await redis.close()
    return await _finish(maker, job, outcome, final, progress)


async def _run(
    job: ImportJob,
    content: bytes,
    maker: async_sessionmaker[AsyncSession],
    redis: SafeRedis,
    outcome: Outcome,
    progress: Progress | None,
    chunk_rows: int,
) -> str:
    file_format: Format = "xlsx" if job.file_format == "xlsx" else "csv"
    try:
        sheet = open_sheet(content, file_format)
        columns = resolve_columns(job.entity, sheet.headers, job.mapping or {})
    except (UnreadableFile, MappingError) as exc:
        raise JobFailed(str(exc)) from None
    del content
    headers = {name: sheet.headers[index] for index, name in columns.items()}
    ctx = Context(job.organization_id, job.user_id, job.on_conflict, headers, outcome)
    handler = HANDLERS[job.entity](ctx)
    job.total_rows = sheet.estimated_rows
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

        reader = _ChunkReader(handler, sheet.rows, columns, headers, chunk_rows)
        # Chunk N+1 is read and validated in a thread while chunk N is written: the writing mostly
        # waits on PostgreSQL, so the two overlap.
        chunk = await _read(reader)
        if chunk is not None:
            for error in chunk.rejected:
                outcome.error(*error)
        while chunk is not None:
            following = asyncio.ensure_future(_read(reader)) if not reader.done else None
            try:
                await _write(handler, chunk.rows, data, maker, redis, job)
                job.processed_rows = chunk.processed
                job.total_rows = max(job.total_rows, chunk.processed)
                await _save_progress(maker, job, outcome, progress)
            except BaseException:
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
    ) -> None:
        self.handler, self.rows, self.columns, self.chunk_rows = handler, rows, columns, chunk_rows
        self.key_column = headers.get(handler.spec.natural_key)
        self.seen: dict[Any, int] = {}
        self.processed = 0
        self.done = False

    def next_chunk(self) -> _Chunk | None:
        """The next chunk of valid rows; None when the sheet is exhausted."""
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


async def _write(
    handler: Handler,
    chunk: list[Row],
    data: AsyncSession | None,
    maker: async_sessionmaker[AsyncSession],
    redis: SafeRedis,
    job: ImportJob,
) -> None:
    if not chunk:
        return
    if data is not None:
        await handler.write(data, chunk)
        data.expunge_all()
        return
    async with session_scope(maker) as db:
        # Chunk and progress commits do not wait for their WAL flush (PostgreSQL's WAL writer flushes
        # it within a moment): the job's final status is committed synchronously, which flushes every
        # earlier commit too, so a finished job is durable. A database crash mid-job can lose the last
        # chunks' commits, never a part of one; importing the file again (idempotent by key) completes it.
        await db.execute(text("SET LOCAL synchronous_commit = off"))
        await handler.write(db, chunk)
        invalidate_after_commit(db, redis, job.organization_id)


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


def _apply_counts(job: ImportJob, outcome: Outcome) -> None:
    job.created, job.updated, job.skipped, job.failed = (
        outcome.created,
        outcome.updated,
        outcome.skipped,
        outcome.failed,
    )
    job.errors = list(outcome.errors)


async def _save_progress(
    maker: async_sessionmaker[AsyncSession], job: ImportJob, outcome: Outcome, progress: Progress | None
) -> None:
    _apply_counts(job, outcome)
    async with session_scope(maker) as db:
        await db.execute(text("SET LOCAL synchronous_commit = off"))  # see `_write`
        await db.execute(
            update(ImportJob)
            .where(ImportJob.id == job.id)
            .values(
                total_rows=job.total_rows,
                processed_rows=job.processed_rows,
                created=job.created,
                updated=job.updated,
                skipped=job.skipped,
                failed=job.failed,
            )
        )
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
                status=job.status,
                total_rows=job.total_rows,
                processed_rows=job.processed_rows,
                created=job.created,
                updated=job.updated,
                skipped=job.skipped,
                failed=job.failed,
                errors=job.errors,
                error=job.error,
                started_at=job.started_at,
                finished_at=job.finished_at,
            )
        )
        await db.execute(delete(ImportUpload).where(ImportUpload.job_id == job.id))
    if progress is not None:
        progress(job)
    return job
