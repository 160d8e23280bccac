from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile, status

from crm.config import get_settings
from crm.core.db import SessionDep
from crm.core.errors import PayloadTooLarge
from crm.core.openapi import errors
from crm.core.schemas import Id, Page, Paging
from crm.imports.schemas import ImportEntity, ImportJobRead, OnConflict
from crm.imports.service import ImportService, parse_mapping
from crm.organizations.dependencies import Tenant, require

router = APIRouter(prefix="/imports", tags=["imports"])

Runner = Annotated[Tenant, Depends(require("imports:run"))]

_MAPPING = (
    'JSON object `{"<column header>": "<field>"}`; without it headers equal to field names map themselves'
)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ImportJobRead,
    responses=errors(400, 401, 403, 413, 422),
)
async def start_import(
    request: Request,
    tenant: Runner,
    db: SessionDep,
    file: Annotated[UploadFile, File(description="CSV (UTF-8, `,` or `;`) or XLSX, at most 50 MiB")],
    entity: Annotated[ImportEntity, Form()],
    mapping: Annotated[str | None, Form(max_length=100_000, description=_MAPPING)] = None,
    dry_run: Annotated[bool, Form(description="Report what would happen; write nothing")] = False,
    on_conflict: Annotated[
        OnConflict, Form(description="Existing rows: update them or leave them")
    ] = "update",
    atomic: Annotated[bool, Form(description="All or nothing: one broken row stops every write")] = False,
) -> object:
    """Queue an import of a spreadsheet (202 with the job; follow it at `GET /imports/{id}`)."""
    cap = get_settings().max_import_bytes
    content = await file.read(cap + 1)
    if len(content) > cap:
        raise PayloadTooLarge(f"The file exceeds {cap} bytes")
    return await ImportService(db, tenant).start(
        content=content,
        file_name=file.filename,
        entity=entity,
        mapping=parse_mapping(mapping),
        dry_run=dry_run,
        on_conflict=on_conflict,
        atomic=atomic,
    )


@router.get("", response_model=Page[ImportJobRead], responses=errors(400, 401, 403, 422))
async def list_imports(tenant: Runner, db: SessionDep, paging: Paging) -> object:
    """Import jobs of the organization, newest first."""
    rows, total = await ImportService(db, tenant).list(paging.limit, paging.offset)
    return paging.page(rows, total)


@router.get("/{import_id}", response_model=ImportJobRead, responses=errors(400, 401, 403, 404, 422))
async def get_import(import_id: Id, tenant: Runner, db: SessionDep) -> object:
    """One import job: progress, counts and per-row errors."""
    return await ImportService(db, tenant).get(import_id)
