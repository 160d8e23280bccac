"""`crm import`: the import job run in-process with a progress bar."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import select

from crm.config import get_settings
from crm.core.db import create_engine, create_sessionmaker, session_scope
from crm.core.errors import AppError
from crm.core.redis import SafeRedis
from crm.imports.engine import run_import
from crm.imports.service import ImportService, parse_mapping
from crm.models import ImportJob, Organization
from crm.organizations.dependencies import Tenant


class CliError(Exception):
    """A message for the operator; the command exits with status 2."""


async def import_file(
    console: Console,
    path: Path,
    *,
    entity: str,
    organization_id: int,
    dry_run: bool,
    on_conflict: str,
    atomic: bool,
    mapping: str | None,
) -> ImportJob:
    """Store the job like `POST /imports` does, then run it here; returns the finished job."""
    settings = get_settings()
    try:
        content = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    if len(content) > settings.max_import_bytes:
        raise CliError(f"{path} exceeds {settings.max_import_bytes} bytes")
    engine = create_engine(settings, pool_size=2, max_overflow=2)
    redis = SafeRedis.from_url(settings.redis_url, settings.redis_timeout)
    maker = create_sessionmaker(engine)
    try:
        async with session_scope(maker) as db:
            found = await db.scalar(
                select(Organization.id).where(
                    Organization.id == organization_id, Organization.deleted_at.is_(None)
                )
            )
            if found is None:
                raise CliError(f"no organization {organization_id}")
            tenant = Tenant(organization_id, frozenset({"imports:run"}))
            try:
                job = await ImportService(db, tenant).start(
                    content=content,
                    file_name=path.name,
                    entity=entity,
                    mapping=parse_mapping(mapping),
                    dry_run=dry_run,
                    on_conflict=on_conflict,
                    atomic=atomic,
                    enqueue=False,
                )
            except AppError as exc:
                raise CliError(exc.detail) from None
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "created {task.fields[created]} updated {task.fields[updated]} failed {task.fields[failed]}"
            ),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console) as bar:
            task = bar.add_task(f"import {entity}", total=None, created=0, updated=0, failed=0)

            def report(current: ImportJob) -> None:
                bar.update(
                    task,
                    total=current.total_rows or None,
                    completed=current.processed_rows,
                    created=current.created,
                    updated=current.updated,
                    failed=current.failed,
                )

            finished = await run_import(job.id, maker=maker, redis=redis, progress=report)
        if finished is None:
            raise CliError(f"import {job.id} did not run")
        return finished
    finally:
        await redis.close()
        await engine.dispose()
