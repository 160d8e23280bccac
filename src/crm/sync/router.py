"""`/admin/sync/*`: start a sync of an integration, follow its jobs, cancel one (SPEC §12)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from crm.core.db import SessionDep
from crm.core.openapi import errors
from crm.core.schemas import Id, Page, Paging
from crm.organizations.dependencies import Tenant, require
from crm.records.router import OptionalId
from crm.sync import service
from crm.sync.schemas import JobStatus, SyncJobRead, SyncStart

router = APIRouter(prefix="/admin/sync", tags=["sync"])

Runner = Annotated[Tenant, Depends(require("sync:run"))]


@router.post(
    "/start",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SyncJobRead,
    responses=errors(400, 401, 403, 404, 409, 422),
)
async def start_sync(data: SyncStart, tenant: Runner, db: SessionDep) -> object:
    """Queue a sync of an integration → 202 with the job. One active job per integration: a second
    start answers 409 `job_already_running` with the active job's `job_id`. Unknown entities → 422."""
    job = await service.start_sync(
        db,
        organization_id=tenant.organization_id,
        integration_id=data.integration_id,
        entities=data.entities,
        full=data.full,
        trigger="manual",
        user_id=tenant.user_id,
    )
    return job


@router.get("/jobs", response_model=Page[SyncJobRead], responses=errors(400, 401, 403, 422))
async def list_jobs(
    tenant: Runner,
    db: SessionDep,
    paging: Paging,
    integration_id: OptionalId = None,
    status: Annotated[JobStatus | None, Query()] = None,
) -> object:
    """Sync jobs of the organization, newest first."""
    rows, total = await service.list_jobs(
        db,
        tenant.organization_id,
        integration_id=integration_id,
        status=status,
        limit=paging.limit,
        offset=paging.offset,
    )
    return paging.page(rows, total)


@router.get("/jobs/{job_id}", response_model=SyncJobRead, responses=errors(400, 401, 403, 404, 422))
async def get_job(job_id: Id, tenant: Runner, db: SessionDep) -> object:
    """One job with its per-entity counts, errors and timings."""
    return await service.get_job(db, tenant.organization_id, job_id)


@router.post("/jobs/{job_id}/cancel", response_model=SyncJobRead, responses=errors(400, 401, 403, 404, 422))
async def cancel_job(job_id: Id, tenant: Runner, db: SessionDep) -> object:
    """Cooperative cancel: a queued job is cancelled at once; a running one stops before its next
    page. Cancelling a finished job changes nothing."""
    return await service.cancel_job(db, tenant.organization_id, job_id)
