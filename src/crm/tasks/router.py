from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status

from crm.core.concurrency import IfMatch, set_etag
from crm.core.db import SessionDep
from crm.core.idempotency import IdempotencyDep
from crm.core.openapi import errors
from crm.core.schemas import Id, Page, PageParams, UtcDatetime, page_params
from crm.organizations.dependencies import Tenant, require
from crm.records.kit import provide
from crm.records.router import OptionalId, idempotent_create
from crm.tasks.dependencies import TaskEditor
from crm.tasks.repository import TaskFilters
from crm.tasks.schemas import Priority, TaskCreate, TaskRead, TaskReplace, TaskStatus, TaskUpdate
from crm.tasks.service import TaskService

router = APIRouter(prefix="/tasks", tags=["tasks"])

Reader = Annotated[Tenant, Depends(require("tasks:read"))]
Writer = Annotated[Tenant, Depends(require("tasks:write"))]
Deleter = Annotated[Tenant, Depends(require("tasks:delete"))]
Paging = Annotated[PageParams, Depends(page_params)]
#: Spelled out rather than `sort_param(...)` so that mypy sees a type.
TaskSort = Annotated[
    Literal["created_at", "-created_at", "due_date", "-due_date", "priority", "-priority"] | None,
    Query(
        description="One of created_at, due_date, priority; prefix with `-` for descending. "
        "Default: newest first. `priority` sorts by weight (low < normal < high)."
    ),
]


#: The feature's service for a request: `service(request, db, tenant)`.
service = provide(TaskService)


@router.get("", response_model=Page[TaskRead], responses=errors(400, 401, 403, 422))
async def list_tasks(
    request: Request,
    tenant: Reader,
    db: SessionDep,
    paging: Paging,
    status: TaskStatus | None = None,
    assignee_id: OptionalId = None,
    deal_id: OptionalId = None,
    contact_id: OptionalId = None,
    priority: Priority | None = None,
    due_before: Annotated[UtcDatetime | None, Query(description="Due at or before (inclusive)")] = None,
    due_after: Annotated[UtcDatetime | None, Query(description="Due at or after (inclusive)")] = None,
    overdue: Annotated[bool, Query(description="`true`: past due and still open or in progress")] = False,
    mine: Annotated[bool, Query(description="`true`: assigned to me")] = False,
    sort: TaskSort = None,
) -> object:
    """Tasks, newest first. `priority` sorts by weight (low < normal < high)."""
    filters = TaskFilters(
        status,
        assignee_id,
        deal_id,
        contact_id,
        priority,
        due_before,
        due_after,
        overdue,
        mine,
        caller_id=tenant.user_id,
    )
    rows, total = await service(request, db, tenant).list(filters, sort, paging.limit, paging.offset)
    return Page(items=rows, total=total, limit=paging.limit, offset=paging.offset)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskRead,
    responses=errors(400, 401, 403, 409, 422),
)
async def create_task(
    data: TaskCreate,
    request: Request,
    tenant: Writer,
    db: SessionDep,
    response: Response,
    idem: IdempotencyDep,
) -> object:
    """Create a task (manager and up). `due_date` may not be in the past; the creator is recorded."""
    return await idempotent_create(
        idem, tenant, response, lambda: service(request, db, tenant).create(data), TaskRead, "/api/v1/tasks"
    )


@router.get("/{task_id}", response_model=TaskRead, responses=errors(400, 401, 403, 404, 422))
async def get_task(
    task_id: Id, request: Request, tenant: Reader, db: SessionDep, response: Response
) -> object:
    task = await service(request, db, tenant).get(task_id)
    set_etag(response, task.version)
    return task


@router.put("/{task_id}", response_model=TaskRead, responses=errors(400, 401, 403, 404, 412, 422))
async def replace_task(
    task_id: Id,
    data: TaskReplace,
    request: Request,
    tenant: TaskEditor,
    db: SessionDep,
    response: Response,
    if_match: IfMatch = None,
) -> object:
    """Replace every editable field. Managers edit any task; a member only one assigned to them, and
    keeps it assigned to themselves. Honours `If-Match` (412 when stale)."""
    task = await service(request, db, tenant).replace(task_id, data, if_match)
    set_etag(response, task.version)
    return task


@router.patch("/{task_id}", response_model=TaskRead, responses=errors(400, 401, 403, 404, 412, 422))
async def update_task(
    task_id: Id,
    data: TaskUpdate,
    request: Request,
    tenant: TaskEditor,
    db: SessionDep,
    response: Response,
    if_match: IfMatch = None,
) -> object:
    """Change the fields sent. Managers edit any task; a member only one assigned to them, and may
    not reassign it. Status `done` sets `completed_at`; leaving it clears it. Honours `If-Match`."""
    task = await service(request, db, tenant).update(task_id, data, if_match)
    set_etag(response, task.version)
    return task


@router.delete(
    "/{task_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(400, 401, 403, 404, 422)
)
async def delete_task(task_id: Id, request: Request, tenant: Deleter, db: SessionDep) -> None:
    """Delete for real (manager and up); the activity log keeps what the task was."""
    await service(request, db, tenant).delete(task_id)
