from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, case, false

from crm.core.repository import TenantRepository, order_by_sort, where_equal
from crm.models import Task
from crm.tasks.schemas import ACTIVE_STATUSES

#: `priority` sorts by weight (low < normal < high), not alphabetically.
PRIORITY_RANK = case({"low": 0, "normal": 1, "high": 2}, value=Task.priority, else_=1)
SORTS: dict[str, Any] = {"created_at": Task.created_at, "due_date": Task.due_date, "priority": PRIORITY_RANK}


@dataclass(frozen=True, slots=True)
class TaskFilters:
    status: str | None = None
    assignee_id: int | None = None
    deal_id: int | None = None
    contact_id: int | None = None
    priority: str | None = None
    due_before: datetime | None = None
    due_after: datetime | None = None
    overdue: bool = False
    #: Only tasks assigned to the caller (`mine=true`); an API key, being nobody, has none.
    mine: bool = False
    caller_id: int | None = None


class TaskRepository(TenantRepository[Task]):
    model = Task

    def filtered(self, f: TaskFilters) -> Select[tuple[Task]]:
        stmt = where_equal(self.base(), Task, f, "status", "assignee_id", "deal_id", "contact_id", "priority")
        if f.due_before is not None:
            stmt = stmt.where(Task.due_date <= f.due_before)
        if f.due_after is not None:
            stmt = stmt.where(Task.due_date >= f.due_after)
        if f.overdue:
            stmt = stmt.where(Task.due_date < datetime.now(UTC), Task.status.in_(ACTIVE_STATUSES))
        if f.mine:
            stmt = stmt.where(Task.assignee_id == f.caller_id if f.caller_id is not None else false())
        return stmt

    async def list(
        self, f: TaskFilters, sort: str | None, limit: int, offset: int
    ) -> tuple[Sequence[Task], int]:
        return await self.page(self.filtered(f), order_by_sort(sort, SORTS, Task.id), limit, offset)
