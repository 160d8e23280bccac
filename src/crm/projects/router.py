from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from crm.core.openapi import errors
from crm.core.schemas import Id, Page, Paging
from crm.organizations.dependencies import Tenant, require
from crm.projects.dependencies import project_filters
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
from crm.records.kit import RecordKit, RouteDocs, Schemas

projects = RecordKit(
    name="projects",
    service=ProjectService,
    docs=RouteDocs(
        list="""Projects, newest first. `amount_min`/`amount_max` bound the requested support; custom fields
        filter as `cf.<key>=value`.""",
        create="""Create a project in `draft`. Client, industry, district and curator must be of the
        organization (422); `external_code` is unique in it (409 `project_external_code_taken`).""",
        replace="Replace every editable field (not the status). Honours `If-Match` (412 when stale).",
        update="Change the fields sent (not the status). Honours `If-Match` (412 when stale).",
        delete="Soft-delete (owner/admin; restorable).",
    ),
    schemas=Schemas(ProjectCreate, ProjectReplace, ProjectUpdate, ProjectRead),
    filters=project_filters,
)

#: The record routes, and the project's own: status moves, history and team.
router = projects.router()
#: `GET /users/{user_id}/projects` (under `/api/v1`).
user_projects_router = APIRouter(prefix="/users", tags=["projects"])

Reader = Annotated[Tenant, Depends(require("projects:read"))]
Writer = Annotated[Tenant, Depends(require("projects:write"))]
Service = Annotated[ProjectService, Depends(projects.provide())]


@router.get(
    "/{project_id}/transitions", response_model=TransitionsRead, responses=errors(400, 401, 403, 404, 422)
)
async def project_transitions(project_id: Id, tenant: Reader, service: Service) -> object:
    """The moves from the current status, each `allowed` for the caller or not, with the `reasons`
    (unmet guards, missing rights). `comment_required` marks moves that need a comment."""
    current, options = await service.transitions(project_id)
    return {"current": current, "transitions": [vars(o) for o in options]}


projects.add_change(
    router,
    "POST",
    "/status",
    StatusMove,
    ProjectService.move,
    name="move_project_status",
    doc="""Move the project to another status. Owner, admin, manager (`projects:status`) or a team
    curator/editor; else 403. A move not in the status model → 409 `illegal_transition` with
    `allowed`; an unmet guard → 409 `transition_guard_failed` with `reasons`; rework and rejection
    without `comment` → 422. A frozen project resumes only to the status it was frozen from.""",
    # Who may move is decided by the status model (team roles count), so the route asks only to read.
    permission="read",
)


projects.add_page(
    router,
    "history",
    HistoryRead,
    ProjectService.history,
    name="project_history",
    doc="Status moves, newest first; the first row (`from_status` null) is the creation in `draft`.",
)
projects.add_page(
    router,
    "users",
    TeamMemberRead,
    ProjectService.team,
    name="project_team",
    doc="The project's team, in the order of assignment.",
)


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
    tenant: Writer,
    service: Service,
    response: Response,
) -> object:
    """Put a member of the organization on the team as `curator`, `editor` or `viewer` (201); for one
    already there, change the role (200). A user who is not a member → 422."""
    member, created = await service.assign(project_id, data)
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
async def unassign_project_user(project_id: Id, user_id: Id, tenant: Writer, service: Service) -> None:
    """Take the user off the team (404 if they are not on it)."""
    await service.unassign(project_id, user_id)


@user_projects_router.get(
    "/{user_id}/projects", response_model=Page[UserProjectRead], responses=errors(400, 401, 403, 404, 422)
)
async def user_projects(user_id: Id, tenant: Reader, service: Service, paging: Paging) -> object:
    """The live projects the user is on the team of, newest first, with their `team_role`.
    A user who is not a member of the organization → 404."""
    rows, total = await service.user_projects(user_id, paging.limit, paging.offset)
    return paging.page(rows, total)
