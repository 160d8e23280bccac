"""Tasks: to-dos on deals and contacts, assigned to members of the organization."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from crm.core.errors import Forbidden
from crm.models import Task
from crm.records.fields import check_range, invalid_field
from crm.records.service import InvalidReference, RecordService
from crm.tasks.repository import TaskFilters, TaskRepository
from crm.tasks.schemas import TaskCreate, TaskReplace, TaskUpdate

CREATED_FIELDS = [
    "title",
    "description",
    "deal_id",
    "contact_id",
    "project_id",
    "assignee_id",
    "created_by_id",
    "due_date",
    "priority",
    "status",
    "completed_at",
]
NOT_NULL = ("title", "priority", "status")


class TaskService(RecordService[Task]):
    entity_type = "task"
    repository_class = TaskRepository
    repo: TaskRepository

    # Rules --------------------------------------------------------------------------------------

    def _check_may_edit(self, task: Task, values: dict[str, Any]) -> None:
        """`tasks:write` edits any task; `tasks:write_own` only one assigned to the caller, who may
        not hand it to anyone else."""
        if self.tenant.can("tasks:write"):
            return
        me = self.tenant.user_id
        if not self.tenant.can("tasks:write_own") or me is None or task.assignee_id != me:
            raise Forbidden("You may edit only the tasks assigned to you")
        if "assignee_id" in values and values["assignee_id"] != me:
            raise Forbidden("You may not assign your task to someone else")

    async def _check_refs(self, values: dict[str, Any], existing: Task | None) -> None:
        """Deal, contact and assignee must be live and of this organization. A reference the task
        already holds is not re-checked, so editing other fields never fails on it."""

        def new_ref(field: str) -> int | None:
            ref = values.get(field)
            if ref is None or (existing is not None and getattr(existing, field) == ref):
                return None
            return int(ref)

        await self.check_refs(
            deal_id=new_ref("deal_id"),
            contact_id=new_ref("contact_id"),
            user_ids={"assignee_id": new_ref("assignee_id")},
        )
        if new_ref("project_id") is not None:
            # There are no projects yet, so no id can name one of this organization.
            raise InvalidReference(
                "project_id: no such record in this organization",
                errors=[{"loc": ["body", "project_id"], "msg": "not found", "type": "invalid_reference"}],
            )

    @staticmethod
    def _completion(task: Task | None, values: dict[str, Any]) -> None:
        """`completed_at` is set when the task becomes done and cleared when it leaves done."""
        if "status" not in values:
            return
        was_done = task is not None and task.status == "done"
        if values["status"] == "done" and not was_done:
            values["completed_at"] = datetime.now(UTC)
        elif values["status"] != "done" and (task is None or was_done):
            values["completed_at"] = None

    # Operations ---------------------------------------------------------------------------------

    async def create(self, data: TaskCreate) -> Task:
        values = data.model_dump()
        if values["due_date"] is not None and values["due_date"] < datetime.now(UTC):
            raise invalid_field("due_date", "a new task cannot be due in the past")
        await self._check_refs(values, None)
        self._completion(None, values)
        task = Task(organization_id=self.tenant.organization_id, created_by_id=self.tenant.user_id, **values)
        return await self.insert(task, CREATED_FIELDS)

    async def list(
        self, filters: TaskFilters, sort: str | None, limit: int, offset: int
    ) -> tuple[Sequence[Task], int]:
        check_range(filters.due_after, filters.due_before, ("due_after", "due_before"))
        return await self.repo.list(filters, sort, limit, offset)

    async def _edit(self, task_id: int, values: dict[str, Any], if_match: str | None) -> Task:
        task = await self.get_for_update(task_id)
        self._check_may_edit(task, values)
        await self._check_refs(values, task)
        self._completion(task, values)
        await self.write(task, values, if_match)
        return task

    async def replace(self, task_id: int, data: TaskReplace, if_match: str | None) -> Task:
        values = data.model_dump()
        if values["status"] is None:
            del values["status"]
        return await self._edit(task_id, values, if_match)

    async def update(self, task_id: int, data: TaskUpdate, if_match: str | None) -> Task:
        values = data.model_dump(exclude_unset=True)
        for field in NOT_NULL:
            if field in values and values[field] is None:
                raise invalid_field(field, "may not be null", "missing")
        return await self._edit(task_id, values, if_match)

    async def delete(self, task_id: int) -> None:
        """Tasks are deleted for real; the activity keeps what the task was."""
        task = await self.get_for_update(task_id)
        await self.hard_delete(task, CREATED_FIELDS)
