from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from crm.activities.router import add_timeline_routes
from crm.core.concurrency import IfMatch, set_etag
from crm.core.db import SessionDep
from crm.core.idempotency import IdempotencyDep
from crm.core.openapi import errors
from crm.core.schemas import Id, Page, PageParams, page_params, sort_param
from crm.models import Project
from crm.organizations.dependencies import Tenant, require
from crm.projects.dependencies import ensure_project, project_filters
from crm.projects.repository import ProjectFilters
from crm.projects.schemas import (
    HistoryRead,
    ProjectCreate,
    ProjectRead,
    ProjectReplace,
    ProjectUpdate,
    StatusMove,
    TeamAssign,
    TeamMemberRead,
    TransitionsRead,
    UserProjectRead,
)
from crm.projects.service import ProjectService
from crm.records.fast_read import fast_read
from crm.records.router import idempotent_create

router = APIRouter(prefix="/projects", tags=["projects"])
#: `GET /users/{user_id}/projects` (under `/api/v1`).
user_projects_router = APIRouter(prefix="/users", tags=["projects"])
PATH = "/api/v1/projects"

Reader = Annotated[Tenant, Depends(require("projects:read"))]
Writer = Annotated[Tenant, Depends(require("projects:write"))]
Paging = Annotated[PageParams, Depends(page_params)]
if TYPE_CHECKING:
    ProjectSort = str | None
else:
    ProjectSort = sort_param(
        "created_at", "updated_at", "name", "requested_support_amount", "own_funds_amount", "jobs_count"
    )


def service(request: Request, db: SessionDep, tenant: Tenant) -> ProjectService:
    return ProjectService(db, tenant, request.app.state.redis)


@router.get("", response_model=Page[ProjectRead], responses=errors(400, 401, 403, 422))
async def list_projects(
    request: Request,
    tenant: Reader,
    db: SessionDep,
    paging: Paging,
    filters: Annotated[ProjectFilters, Depends(project_filters)],
    sort: ProjectSort = None,
) -> object:
    """Projects, newest first. `amount_min`/`amount_max` bound the requested support; custom fields
    filter as `cf.<key>=value`."""
    rows, total = await service(request, db, tenant).list(filters, sort, paging.limit, paging.offset)
    return Page(items=rows, total=total, limit=paging.limit, offset=paging.offset)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ProjectRead,
    responses=errors(400, 401, 403, 409, 422),
)
async def create_project(
    data: ProjectCreate,
    request: Request,
    tenant: Writer,
    db: SessionDep,
    response: Response,
    idem: IdempotencyDep,
) -> object:
    """Create a project in `draft`. Client, industry, district and curator must be of the
    organization (422); `external_code` is unique in it (409 `project_external_code_taken`)."""
    return await idempotent_create(
        idem, tenant, response, lambda: service(request, db, tenant).create(data), ProjectRead, PATH
    )


@router.get("/{project_id}", response_model=ProjectRead, responses=errors(400, 401, 403, 404, 422))
@fast_read(Project, "projects:read", ProjectRead)
async def get_project(
    project_id: Id, request: Request, tenant: Reader, db: SessionDep, response: Response
) -> object:
    """One project; its `ETag` is the version to send back in `If-Match`."""
    project = await service(request, db, tenant).get(project_id)
    set_etag(response, project.version)
    return project


@router.put("/{project_id}", response_model=ProjectRead, responses=errors(400, 401, 403, 404, 409, 412, 422))
async def replace_project(
    project_id: Id,
    data: ProjectReplace,
    request: Request,
    tenant: Writer,
    db: SessionDep,
    response: Response,
    if_match: IfMatch = None,
) -> object:
    """Replace every editable field (not the status). Honours `If-Match` (412 when stale)."""
    project = await service(request, db, tenant).replace(project_id, data, if_match)
    set_etag(response, project.version)
    return project


@router.patch(
    "/{project_id}", response_model=ProjectRead, responses=errors(400, 401, 403, 404, 409, 412, 422)
)
async def update_project(
    project_id: Id,
    data: ProjectUpdate,
    request: Request,
    tenant: Writer,
    db: SessionDep,
    response: Response,
    if_match: IfMatch = None,
) -> object:
    """Change the fields sent (not the status). Honours `If-Match` (412 when stale)."""
    project = await service(request, db, tenant).update(project_id, data, if_match)
    set_etag(response, project.version)
    return project


@router.delete(
    "/{project_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(400, 401, 403, 404, 422)
)
async def delete_project(
    project_id: Id,
    request: Request,
    tenant: Annotated[Tenant, Depends(require("projects:delete"))],
    db: SessionDep,
) -> None:
    """Soft-delete (owner/admin; restorable)."""
    await service(request, db, tenant).delete(project_id)


@router.post(
    "/{project_id}/restore", response_model=ProjectRead, responses=errors(400, 401, 403, 404, 409, 422)
)
async def restore_project(
    project_id: Id,
    request: Request,
    tenant: Annotated[Tenant, Depends(require("records:restore"))],
    db: SessionDep,
    response: Response,
) -> object:
    """Bring back a deleted project (owner/admin)."""
    project = await service(request, db, tenant).restore(project_id)
    set_etag(response, project.version)
    return project


@router.get(
    "/{project_id}/transitions", response_model=TransitionsRead, responses=errors(400, 401, 403, 404, 422)
)
async def project_transitions(project_id: Id, request: Request, tenant: Reader, db: SessionDep) -> object:
    """The moves from the current status, each `allowed` for the caller or not, with the `reasons`
    (unmet guards, missing rights). `comment_required` marks moves that need a comment."""
    current, options = await service(request, db, tenant).transitions(project_id)
    return {"current": current, "transitions": [vars(o) for o in options]}


@router.post(
    "/{project_id}/status", response_model=ProjectRead, responses=errors(400, 401, 403, 404, 409, 412, 422)
)
async def move_project_status(
    project_id: Id,
    data: StatusMove,
    request: Request,
    tenant: Reader,
    db: SessionDep,
    response: Response,
    if_match: IfMatch = None,
) -> object:
    """Move the project to another status. Owner, admin, manager (`projects:status`) or a team
    curator/editor; else 403. A move not in the status model → 409 `illegal_transition` with
    `allowed`; an unmet guard → 409 `transition_guard_failed` with `reasons`; rework and rejection
    without `comment` → 422. A frozen project resumes only to the status it was frozen from."""
    project = await service(request, db, tenant).move(project_id, data, if_match)
    set_etag(response, project.version)
    return project


@router.get(
    "/{project_id}/history", response_model=Page[HistoryRead], responses=errors(400, 401, 403, 404, 422)
)
async def project_history(
    project_id: Id, request: Request, tenant: Reader, db: SessionDep, paging: Paging
) -> object:
    """Status moves, newest first; the first row (`from_status` null) is the creation in `draft`."""
    rows, total = await service(request, db, tenant).history(project_id, paging.limit, paging.offset)
    return Page(items=rows, total=total, limit=paging.limit, offset=paging.offset)


@router.get(
    "/{project_id}/users", response_model=Page[TeamMemberRead], responses=errors(400, 401, 403, 404, 422)
)
async def project_team(
    project_id: Id, request: Request, tenant: Reader, db: SessionDep, paging: Paging
) -> object:
    """The project's team, in the order of assignment."""
    rows, total = await service(request, db, tenant).team(project_id, paging.limit, paging.offset)
    return Page(items=rows, total=total, limit=paging.limit, offset=paging.offset)


@router.post(
    "/{project_id}/users",
    status_code=status.HTTP_201_CREATED,
    response_model=TeamMemberRead,
    responses={
        200: {"model": TeamMemberRead, "description": "Already on the team: the role is updated"},
        **errors(400, 401, 403, 404, 422),
    },
)
async def assign_project_user(
    project_id: Id,
    data: TeamAssign,
    request: Request,
    tenant: Writer,
    db: SessionDep,
    response: Response,
) -> object:
    """Put a member of the organization on the team as `curator`, `editor` or `viewer` (201); for one
    already there, change the role (200). A user who is not a member → 422."""
    member, created = await service(request, db, tenant).assign(project_id, data)
    if created:
        response.headers["Location"] = f"/api/v1/projects/{project_id}/users/{data.user_id}"
    else:
        response.status_code = status.HTTP_200_OK
    return member


@router.delete(
    "/{project_id}/users/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(400, 401, 403, 404, 422),
)
async def unassign_project_user(
    project_id: Id, user_id: Id, request: Request, tenant: Writer, db: SessionDep
) -> None:
    """Take the user off the team (404 if they are not on it)."""
    await service(request, db, tenant).unassign(project_id, user_id)


add_timeline_routes(router, "project", "projects:read", ensure_project)


@user_projects_router.get(
    "/{user_id}/projects", response_model=Page[UserProjectRead], responses=errors(400, 401, 403, 404, 422)
)
async def user_projects(
    user_id: Id, request: Request, tenant: Reader, db: SessionDep, paging: Paging
) -> object:
    """The live projects the user is on the team of, newest first, with their `team_role`.
    A user who is not a member of the organization → 404."""
    rows, total = await service(request, db, tenant).user_projects(user_id, paging.limit, paging.offset)
    return Page(items=rows, total=total, limit=paging.limit, offset=paging.offset)
