from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from crm.core.concurrency import IfMatch, set_etag
from crm.core.idempotency import IdempotencyDep
from crm.core.idempotent import create_once
from crm.core.openapi import creates, errors
from crm.core.schemas import Id, Page, Paging
from crm.organizations.dependencies import principal_of, require, tenant_service
from crm.records.router import idempotent_create
from crm.support.schemas import DecisionCreate, DecisionRead, SupportCreate, SupportRead, SupportUpdate
from crm.support.service import SupportService

router = APIRouter(tags=["support"])
#: The measures of one project: `/projects/{project_id}/support/...`.
measures = APIRouter(prefix="/projects/{project_id}/support")

Reader = Annotated[SupportService, Depends(tenant_service(SupportService, require("projects:read")))]
Writer = Annotated[SupportService, Depends(tenant_service(SupportService, require("projects:write")))]


def _collection(project_id: int) -> str:
    return f"/api/v1/projects/{project_id}/support"


@measures.get("", response_model=Page[SupportRead], responses=errors(400, 401, 403, 404, 422))
async def list_support(project_id: Id, svc: Reader, paging: Paging) -> object:
    """The project's support measures, newest first."""
    return paging.page(*await svc.list(project_id, paging.limit, paging.offset))


@creates(measures, "", SupportRead, 400, 401, 403, 404, 409, 422)
async def create_support(
    project_id: Id,
    data: SupportCreate,
    svc: Writer,
    response: Response,
    idem: IdempotencyDep,
) -> object:
    """Add a support measure (status `requested`). Finance and credit are in RUB, equipment and
    technical in pieces, land in meters, square_meters, cubic_meters or hectares; `date_end` is not
    before `date_start`; program and provider are rows of the organization's dictionaries (422)."""
    return await idempotent_create(
        idem,
        svc.tenant,
        response,
        lambda: svc.create(project_id, data),
        SupportRead,
        _collection(project_id),
    )


@measures.get("/{support_id}", response_model=SupportRead, responses=errors(400, 401, 403, 404, 422))
async def get_support(project_id: Id, support_id: Id, svc: Reader, response: Response) -> object:
    """One measure of the project (404 when it belongs to another project); `ETag` is its version."""
    measure = await svc.get_of_project(project_id, support_id)
    set_etag(response, measure.version)
    return measure


@measures.patch(
    "/{support_id}",
    response_model=SupportRead,
    responses=errors(400, 401, 403, 404, 409, 412, 422),
)
async def update_support(
    project_id: Id,
    support_id: Id,
    data: SupportUpdate,
    svc: Writer,
    response: Response,
    if_match: IfMatch = None,
) -> object:
    """Change the fields sent, under the same rules as creation. `status` may be set to `provided`
    once the measure is approved (409 otherwise). Honours `If-Match` (412 when stale)."""
    measure = await svc.update(project_id, support_id, data, if_match)
    set_etag(response, measure.version)
    return measure


@measures.delete(
    "/{support_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(400, 401, 403, 404, 422),
)
async def delete_support(project_id: Id, support_id: Id, svc: Writer) -> None:
    """Delete the measure and its decisions for real; the activity log keeps what it was."""
    await svc.delete(project_id, support_id)


@measures.get(
    "/{support_id}/decisions",
    response_model=Page[DecisionRead],
    responses=errors(400, 401, 403, 404, 422),
)
async def list_project_support_decisions(
    project_id: Id, support_id: Id, svc: Reader, paging: Paging
) -> object:
    """Decisions on the measure, newest first."""
    measure = await svc.get_of_project(project_id, support_id)
    return paging.page(*await svc.list_decisions(measure.id, paging.limit, paging.offset))


@creates(measures, "/{support_id}/decisions", DecisionRead, 400, 401, 403, 404, 409, 422)
async def create_decision(
    project_id: Id,
    support_id: Id,
    data: DecisionCreate,
    svc: Writer,
    response: Response,
    idem: IdempotencyDep,
) -> object:
    """Record a decision on the measure; `decided_by` is the caller. `approved` sets the measure
    `approved`, `rejected` sets it `rejected`, `rework` sends it back to `requested`. A measure already
    provided takes no more decisions (409)."""

    async def decide() -> DecisionRead:
        measure = await svc.get_of_project(project_id, support_id, for_update=True)
        decision = await svc.decide(measure, data)
        response.headers["Location"] = f"{_collection(project_id)}/{support_id}/decisions/{decision.id}"
        return DecisionRead.model_validate(decision)

    return await create_once(idem, principal_of(svc.tenant), response, decide)


@measures.get(
    "/{support_id}/decisions/{decision_id}",
    response_model=DecisionRead,
    responses=errors(400, 401, 403, 404, 422),
)
async def get_decision(project_id: Id, support_id: Id, decision_id: Id, svc: Reader) -> object:
    """One decision on the measure."""
    measure = await svc.get_of_project(project_id, support_id)
    return await svc.get_decision(measure.id, decision_id)


router.include_router(measures)


@router.get(
    "/support/{support_id}/decisions",
    response_model=Page[DecisionRead],
    responses=errors(400, 401, 403, 404, 422),
)
async def list_support_decisions(support_id: Id, svc: Reader, paging: Paging) -> object:
    """The same decisions, addressed by the measure alone, newest first."""
    measure = await svc.get_live(support_id)
    return paging.page(*await svc.list_decisions(measure.id, paging.limit, paging.offset))
