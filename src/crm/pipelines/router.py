from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from crm.core.concurrency import IfMatch, set_etag
from crm.core.idempotency import IdempotencyDep
from crm.core.idempotent import create_once
from crm.core.openapi import creates, errors
from crm.core.schemas import Id, Page, Paging, sort_param
from crm.organizations.dependencies import principal_of, require, tenant_service
from crm.pipelines.schemas import PipelineCreate, PipelineRead, PipelineUpdate, StageCreate, StageUpdate
from crm.pipelines.service import PipelineService, PipelineWithStages

router = APIRouter(prefix="/pipelines", tags=["pipelines"])

#: The pipeline service for a caller holding the permission (403 otherwise).
ReadService = Annotated[PipelineService, Depends(tenant_service(PipelineService, require("pipelines:read")))]
ManageService = Annotated[
    PipelineService, Depends(tenant_service(PipelineService, require("pipelines:manage")))
]
if TYPE_CHECKING:
    PipelineSort = str | None
else:
    PipelineSort = sort_param("created_at", "name")
StageKeyPath = Annotated[str, Path(min_length=1, max_length=50, description="The stage's key")]


def answer(response: Response, found: PipelineWithStages) -> PipelineRead:
    pipeline, stages = found
    set_etag(response, pipeline.version)
    return PipelineRead.build(pipeline, stages)


@router.get("", response_model=Page[PipelineRead], responses=errors(400, 401, 403, 422))
async def list_pipelines(
    service: ReadService, paging: Paging, sort: PipelineSort = None
) -> Page[PipelineRead]:
    """The organization's pipelines with their ordered stages (archived ones flagged), newest first.
    The default sales pipeline is created on first use."""
    rows, total = await service.list(sort, paging.limit, paging.offset)
    return paging.page([PipelineRead.build(p, s) for p, s in rows], total)


@creates(router, "", PipelineRead, 400, 401, 403, 409, 422)
async def create_pipeline(
    data: PipelineCreate, service: ManageService, response: Response, idem: IdempotencyDep
) -> object:
    """Create a pipeline, optionally with its initial stages (in order) and as the new default."""

    async def create() -> PipelineRead:
        found = await service.create(data)
        response.headers["Location"] = f"/api/v1/pipelines/{found[0].id}"
        return answer(response, found)

    return await create_once(idem, principal_of(service.tenant), response, create)


@router.get("/{pipeline_id}", response_model=PipelineRead, responses=errors(400, 401, 403, 404, 422))
async def get_pipeline(pipeline_id: Id, service: ReadService, response: Response) -> PipelineRead:
    return answer(response, await service.read(pipeline_id))


@router.patch(
    "/{pipeline_id}", response_model=PipelineRead, responses=errors(400, 401, 403, 404, 409, 412, 422)
)
async def update_pipeline(
    pipeline_id: Id,
    data: PipelineUpdate,
    service: ManageService,
    response: Response,
    if_match: IfMatch = None,
) -> PipelineRead:
    """Rename it, or make it the default (`is_default: true`). Honours `If-Match` (412 when stale)."""
    return answer(response, await service.update(pipeline_id, data, if_match))


@router.delete(
    "/{pipeline_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(400, 401, 403, 404, 409, 422)
)
async def delete_pipeline(pipeline_id: Id, service: ManageService) -> None:
    """Delete a pipeline and its stages. Refused (409) for the default pipeline (`pipeline_is_default`)
    and while any deal, deleted ones included, is in it (`pipeline_in_use`)."""
    await service.delete(pipeline_id)


@creates(router, "/{pipeline_id}/stages", PipelineRead, 400, 401, 403, 404, 409, 412, 422)
async def add_stage(
    pipeline_id: Id,
    data: StageCreate,
    service: ManageService,
    response: Response,
    idem: IdempotencyDep,
    if_match: IfMatch = None,
) -> object:
    """Add a stage at `position` (0 = first; default last); later stages move down one place.
    Answers with the pipeline and its new order."""

    async def add() -> PipelineRead:
        found = await service.add_stage(pipeline_id, data, if_match)
        response.headers["Location"] = f"/api/v1/pipelines/{pipeline_id}"
        return answer(response, found)

    return await create_once(idem, principal_of(service.tenant), response, add)


@router.patch(
    "/{pipeline_id}/stages/{key}",
    response_model=PipelineRead,
    responses=errors(400, 401, 403, 404, 409, 412, 422),
)
async def update_stage(
    pipeline_id: Id,
    key: StageKeyPath,
    data: StageUpdate,
    service: ManageService,
    response: Response,
    if_match: IfMatch = None,
) -> PipelineRead:
    """Rename, move (`position`) or archive/unarchive a stage. A stage with live deals cannot be
    archived (409 `stage_in_use`). Answers with the pipeline and its order."""
    return answer(response, await service.update_stage(pipeline_id, key, data, if_match))


@router.delete(
    "/{pipeline_id}/stages/{key}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(400, 401, 403, 404, 409, 412, 422),
)
async def remove_stage(
    pipeline_id: Id, key: StageKeyPath, service: ManageService, if_match: IfMatch = None
) -> None:
    """Remove a stage for good. Refused (409 `stage_in_use`) while any deal, deleted ones included,
    is in it; archive it instead to keep it out of new deals."""
    await service.remove_stage(pipeline_id, key, if_match)
