from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response, status

from crm.core.concurrency import IfMatch, with_etag
from crm.core.idempotency import IdempotencyDep
from crm.core.openapi import creates, errors
from crm.core.schemas import Id, Page, Paging, UtcDatetime
from crm.organizations.dependencies import require, tenant_service
from crm.records.router import OptionalId, idempotent_create
from crm.tasks.dependencies import require_tasks_write_or_write_own
from crm.tasks.repository import TaskFilters
from crm.tasks.schemas import Priority, TaskCreate, TaskRead, TaskReplace, TaskStatus, TaskUpdate
from crm.tasks.service import TaskService

router = APIRouter(prefix="/tasks", tags=["tasks"])

#: The task service for a caller holding the permission (403 otherwise).
ReadService = Annotated[TaskService, Depends(tenant_service(TaskService, require("tasks:read")))]
WriteService = Annotated[TaskService, Depends(tenant_service(TaskService, require("tasks:write")))]
EditService = Annotated[TaskService, Depends(tenant_service(TaskService, require_tasks_write_or_write_own))]
DeleteService = Annotated[TaskService, Depends(tenant_service(TaskService, require("tasks:delete")))]
#: Spelled out rather than `sort_param(...)` so that mypy sees a type.
TaskSort = Annotated[
    Literal["created_at", "-created_at", "due_date", "-due_date", "priority", "-priority"] | None,
    Query(
        description="One of created_at, due_date, priority; prefix with `-` for descending. "
        "Default: newest first. `priority` sorts by weight (low < normal < high)."
    ),
]


@router.get("", response_model=Page[TaskRead], responses=errors(400, 401, 403, 422))
async def list_tasks(
    service: ReadService,
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
        caller_id=service.tenant.user_id,
    )
    return paging.page(*await service.list(filters, sort, paging.limit, paging.offset))


@creates(router, "", TaskRead, 400, 401, 403, 409, 422)
async def create_task(
    data: TaskCreate, service: WriteService, response: Response, idem: IdempotencyDep
) -> object:
    """Create a task (manager and up). `due_date` may not be in the past; the creator is recorded."""
    return await idempotent_create(
        idem, service.tenant, response, lambda: service.create(data), TaskRead, "/api/v1/tasks"
    )


@router.get("/{task_id}", response_model=TaskRead, responses=errors(400, 401, 403, 404, 422))
async def get_task(task_id: Id, service: ReadService, response: Response) -> object:
    return with_etag(response, await service.get(task_id))


@router.put("/{task_id}", response_model=TaskRead, responses=errors(400, 401, 403, 404, 412, 422))
async def replace_task(
    task_id: Id, data: TaskReplace, service: EditService, response: Response, if_match: IfMatch = None
) -> object:
    """Replace every editable field. Managers edit any task; a member only one assigned to them, and
    keeps it assigned to themselves. Honours `If-Match` (412 when stale)."""
    return with_etag(response, await service.replace(task_id, data, if_match))


@router.patch("/{task_id}", response_model=TaskRead, responses=errors(400, 401, 403, 404, 412, 422))
async def update_task(
    task_id: Id, data: TaskUpdate, service: EditService, response: Response, if_match: IfMatch = None
) -> object:
    """Change the fields sent. Managers edit any task; a member only one assigned to them, and may
    not reassign it. Status `done` sets `completed_at`; leaving it clears it. Honours `If-Match`."""
    return with_etag(response, await service.update(task_id, data, if_match))


@router.delete(
    "/{task_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(400, 401, 403, 404, 422)
)
async def delete_task(task_id: Id, service: DeleteService) -> None:
    """Delete for real (manager and up); the activity log keeps what the task was."""
    await service.delete(task_id)
