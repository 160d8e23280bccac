from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Path, Request, Response, status

from crm.core.concurrency import IfMatch, set_etag
from crm.core.db import SessionDep
from crm.core.idempotency import IdempotencyDep
from crm.core.openapi import errors
from crm.core.schemas import Id, Page, PageParams, page_params, sort_param
from crm.organizations.dependencies import Tenant, principal_of, require
from crm.pipelines.schemas import PipelineCreate, PipelineRead, PipelineUpdate, StageCreate, StageUpdate
from crm.pipelines.service import PipelineService, PipelineWithStages
from crm.records.kit import provide

router = APIRouter(prefix="/pipelines", tags=["pipelines"])

Reader = Annotated[Tenant, Depends(require("pipelines:read"))]
Manager = Annotated[Tenant, Depends(require("pipelines:manage"))]
Paging = Annotated[PageParams, Depends(page_params)]
if TYPE_CHECKING:
    PipelineSort = str | None
else:
    PipelineSort = sort_param("created_at", "name")
StageKeyPath = Annotated[str, Path(min_length=1, max_length=50, description="The stage's key")]


#: The feature's service for a request: `service(request, db, tenant)`.
service = provide(PipelineService)


def answer(response: Response, found: PipelineWithStages) -> PipelineRead:
    pipeline, stages = found
    set_etag(response, pipeline.version)
    return PipelineRead.build(pipeline, stages)


@router.get("", response_model=Page[PipelineRead], responses=errors(400, 401, 403, 422))
async def list_pipelines(
    request: Request, tenant: Reader, db: SessionDep, paging: Paging, sort: PipelineSort = None
) -> Page[PipelineRead]:
    """The organization's pipelines with their ordered stages (archived ones flagged), newest first.
    The default sales pipeline is created on first use."""
    rows, total = await service(request, db, tenant).list(sort, paging.limit, paging.offset)
    items = [PipelineRead.build(p, s) for p, s in rows]
    return Page(items=items, total=total, limit=paging.limit, offset=paging.offset)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=PipelineRead,
    responses=errors(400, 401, 403, 409, 422),
)
async def create_pipeline(
    data: PipelineCreate,
    request: Request,
    tenant: Manager,
    db: SessionDep,
    response: Response,
    idem: IdempotencyDep,
) -> object:
    """Create a pipeline, optionally with its initial stages (in order) and as the new default."""
    await idem.claim(principal_of(tenant))
    if idem.replay is not None:
        return idem.replay
    found = await service(request, db, tenant).create(data)
    response.headers["Location"] = f"/api/v1/pipelines/{found[0].id}"
    body = answer(response, found)
    await idem.save(response, status.HTTP_201_CREATED, body)
    return body


@router.get("/{pipeline_id}", response_model=PipelineRead, responses=errors(400, 401, 403, 404, 422))
async def get_pipeline(
    pipeline_id: Id, request: Request, tenant: Reader, db: SessionDep, response: Response
) -> PipelineRead:
    return answer(response, await service(request, db, tenant).read(pipeline_id))


@router.patch(
    "/{pipeline_id}", response_model=PipelineRead, responses=errors(400, 401, 403, 404, 409, 412, 422)
)
async def update_pipeline(
    pipeline_id: Id,
    data: PipelineUpdate,
    request: Request,
    tenant: Manager,
    db: SessionDep,
    response: Response,
    if_match: IfMatch = None,
) -> PipelineRead:
    """Rename it, or make it the default (`is_default: true`). Honours `If-Match` (412 when stale)."""
    return answer(response, await service(request, db, tenant).update(pipeline_id, data, if_match))


@router.delete(
    "/{pipeline_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(400, 401, 403, 404, 409, 422)
)
async def delete_pipeline(pipeline_id: Id, request: Request, tenant: Manager, db: SessionDep) -> None:
    """Delete a pipeline and its stages. Refused (409) for the default pipeline (`pipeline_is_default`)
    and while any deal, deleted ones included, is in it (`pipeline_in_use`)."""
    await service(request, db, tenant).delete(pipeline_id)


@router.post(
    "/{pipeline_id}/stages",
    status_code=status.HTTP_201_CREATED,
    response_model=PipelineRead,
    responses=errors(400, 401, 403, 404, 409, 412, 422),
)
async def add_stage(
    pipeline_id: Id,
    data: StageCreate,
    request: Request,
    tenant: Manager,
    db: SessionDep,
    response: Response,
    idem: IdempotencyDep,
    if_match: IfMatch = None,
) -> object:
    """Add a stage at `position` (0 = first; default last); later stages move down one place.
    Answers with the pipeline and its new order."""
    await idem.claim(principal_of(tenant))
    if idem.replay is not None:
        return idem.replay
    found = await service(request, db, tenant).add_stage(pipeline_id, data, if_match)
    response.headers["Location"] = f"/api/v1/pipelines/{pipeline_id}"
    body = answer(response, found)
    await idem.save(response, status.HTTP_201_CREATED, body)
    return body


@router.patch(
    "/{pipeline_id}/stages/{key}",
    response_model=PipelineRead,
    responses=errors(400, 401, 403, 404, 409, 412, 422),
)
async def update_stage(
    pipeline_id: Id,
    key: StageKeyPath,
    data: StageUpdate,
    request: Request,
    tenant: Manager,
    db: SessionDep,
    response: Response,
    if_match: IfMatch = None,
) -> PipelineRead:
    """Rename, move (`position`) or archive/unarchive a stage. A stage with live deals cannot be
    archived (409 `stage_in_use`). Answers with the pipeline and its order."""
    return answer(response, await service(request, db, tenant).update_stage(pipeline_id, key, data, if_match))


@router.delete(
    "/{pipeline_id}/stages/{key}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(400, 401, 403, 404, 409, 412, 422),
)
async def remove_stage(
    pipeline_id: Id,
    key: StageKeyPath,
    request: Request,
    tenant: Manager,
    db: SessionDep,
    if_match: IfMatch = None,
) -> None:
    """Remove a stage for good. Refused (409 `stage_in_use`) while any deal, deleted ones included,
    is in it; archive it instead to keep it out of new deals."""
    await service(request, db, tenant).remove_stage(pipeline_id, key, if_match)
