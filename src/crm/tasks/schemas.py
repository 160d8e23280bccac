from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field

from crm.core.schemas import InputModel, ReadModel, UtcDatetime
from crm.records.schemas import RefId

Priority = Literal["low", "normal", "high"]
TaskStatus = Literal["open", "in_progress", "done", "cancelled"]
#: Statuses in which a task is still to be done (and can be overdue).
ACTIVE_STATUSES: tuple[str, ...] = ("open", "in_progress")


class TaskFields(InputModel):
    description: str | None = Field(default=None, max_length=10_000)
    deal_id: RefId = None
    contact_id: RefId = None
    project_id: RefId = None
    assignee_id: RefId = None
    due_date: UtcDatetime | None = Field(default=None, description="Not in the past when the task is created")
    priority: Priority = "normal"
    status: TaskStatus = "open"


class TaskCreate(TaskFields):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"title": "Call back about the offer", "priority": "high"}]}
    )

    title: str = Field(min_length=1, max_length=300)


class TaskReplace(TaskCreate):
    """PUT: every editable field; an omitted one is cleared (`priority` to `normal`), except `status`,
    which keeps its value when omitted (as a deal's does), so that saving a form never reopens a task."""

    status: TaskStatus | None = None  # type: ignore[assignment]


class TaskUpdate(InputModel):
    """PATCH: only the fields sent change."""

    title: str | None = Field(default=None, min_length=1, max_length=300)
    description: str | None = Field(default=None, max_length=10_000)
    deal_id: RefId = None
    contact_id: RefId = None
    project_id: RefId = None
    assignee_id: RefId = None
    due_date: UtcDatetime | None = None
    priority: Priority | None = None
    status: TaskStatus | None = None


class TaskRead(ReadModel):
    id: int
    title: str
    description: str | None
    deal_id: int | None
    contact_id: int | None
    project_id: int | None
    assignee_id: int | None
    created_by_id: int | None
    due_date: datetime | None
    priority: str
    status: str
    completed_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime
