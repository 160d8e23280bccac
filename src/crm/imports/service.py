"""Starting import jobs and reading them back."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import orjson
import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.config import get_settings
from crm.core.db import on_commit
from crm.core.errors import NotFound, PayloadTooLarge, UnprocessableEntity
from crm.imports.columns import MappingError, mapped_fields, resolve_columns
from crm.imports.fields import CUSTOM_FIELD_PREFIX, ENTITIES
from crm.imports.reader import (
    FileTooLarge,
    Format,
    UnreadableFile,
    check_workbook,
    detect_format,
    inspect_csv,
)
from crm.imports.repository import ImportJobRepository
from crm.models import CustomField, ImportJob, ImportUpload
from crm.organizations.dependencies import Tenant

log = structlog.get_logger(__name__)


class ImportFileInvalid(UnprocessableEntity):
    code = "import_file_invalid"


class ImportMappingInvalid(UnprocessableEntity):
    code = "import_mapping_invalid"


class ImportTooLarge(PayloadTooLarge):
    code = "import_too_large"


#: Seconds the request waits for the broker to take the job; past that the job stays queued and the
#: requeue pass (`imports.requeue_queued`) sends it again.
ENQUEUE_TIMEOUT = 5.0


def inspect_upload(content: bytes, max_unzipped: int) -> tuple[Format, list[str] | None]:
    """What the upload checks before storing a job (bounded work; run in a thread): the format, and
    the header row of a CSV file. A workbook is only checked from its ZIP central directory (sizes,
    ratios): its headers are read by the worker."""
    file_format = detect_format(content)
    if file_format == "xlsx":
        check_workbook(content, max_unzipped)
        return file_format, None
    return file_format, inspect_csv(content)


def parse_mapping(raw: str | None) -> dict[str, str | None]:
    """The `mapping` form field: a JSON object of column header → field name (null ignores a column)."""
    if raw is None or not raw.strip():
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _mapping_error("mapping must be a JSON object") from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in value.items()
    ):
        raise _mapping_error('mapping must be a JSON object such as {"E-mail": "email"}')
    return value


def _mapping_error(message: str) -> ImportMappingInvalid:
    return ImportMappingInvalid(
        message, errors=[{"loc": ["body", "mapping"], "msg": message, "type": "value_error"}]
    )


def enqueue_import(job_id: int) -> None:
    """Hand the job to a worker."""
    from crm.imports.jobs import run_import_job

    run_import_job.apply_async(args=[job_id])


async def _enqueue_after_commit(job_id: int) -> None:
    try:
        await asyncio.wait_for(asyncio.to_thread(enqueue_import, job_id), ENQUEUE_TIMEOUT)
    except Exception as exc:  # the broker is away: the job stays queued; the requeue pass sends it again
        log.warning("import_enqueue_failed", job_id=job_id, error=repr(exc)[:300])


class ImportService:
    def __init__(self, db: AsyncSession, tenant: Tenant) -> None:
        self.db = db
        self.tenant = tenant
        self.repo = ImportJobRepository(db, tenant.organization_id)

    async def start(
        self,
        *,
        content: bytes,
        file_name: str | None,
        entity: str,
        mapping: dict[str, str | None],
        dry_run: bool,
        on_conflict: str,
        atomic: bool,
        enqueue: bool = True,
    ) -> ImportJob:
        """Check the file and the mapping, store the job and its upload, queue it after commit.

        Nothing of the file is parsed on the event loop: the bounded checks run in a thread."""
        max_unzipped = get_settings().import_max_unzipped_bytes
        try:
            file_format, headers = await asyncio.to_thread(inspect_upload, content, max_unzipped)
        except FileTooLarge as exc:
            raise ImportTooLarge(str(exc)) from None
        except UnreadableFile as exc:
            raise ImportFileInvalid(
                str(exc), errors=[{"loc": ["body", "file"], "msg": str(exc), "type": "value_error"}]
            ) from None
        try:
            if headers is None:
                fields: Iterable[str] = mapped_fields(entity, mapping)
            else:
                fields = resolve_columns(entity, headers, mapping).values()
        except MappingError as exc:
            raise _mapping_error(str(exc)) from None
        await self._check_custom_fields(entity, fields)

        job = ImportJob(
            organization_id=self.tenant.organization_id,
            user_id=self.tenant.user_id,
            entity=entity,
            status="queued",
            file_name=(file_name or "")[:300] or None,
            file_format=file_format,
            mapping=dict(mapping),
            dry_run=dry_run,
            on_conflict=on_conflict,
            atomic=atomic,
            errors=[],
            heartbeat_at=datetime.now(UTC),
        )
        self.db.add(job)
        await self.db.flush()
        self.db.add(ImportUpload(job_id=job.id, content=content))
        await self.db.flush()
        if enqueue:
            on_commit(self.db, _enqueue_after_commit, job.id)
        return job

    async def _check_custom_fields(self, entity: str, fields: Iterable[str]) -> None:
        keys = [f[len(CUSTOM_FIELD_PREFIX) :] for f in fields if f.startswith(CUSTOM_FIELD_PREFIX)]
        if not keys:
            return
        known = set(
            await self.db.scalars(
                select(CustomField.key).where(
                    CustomField.organization_id == self.tenant.organization_id,
                    CustomField.entity == ENTITIES[entity].entity_type,
                    CustomField.key.in_(keys),
                )
            )
        )
        for key in keys:
            if key not in known:
                raise _mapping_error(f"{CUSTOM_FIELD_PREFIX}{key}: no such custom field of {entity}")

    async def get(self, job_id: int) -> ImportJob:
        job = await self.repo.get(job_id)
        if job is None:
            raise NotFound("Import not found")
        return job

    async def list(self, limit: int, offset: int) -> tuple[Sequence[ImportJob], int]:
        return await self.repo.list(limit, offset)
