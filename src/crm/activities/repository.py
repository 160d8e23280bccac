from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from crm.core.repository import TenantRepository
from crm.models import Activity


@dataclass(frozen=True, slots=True)
class ActivityFilters:
    entity_type: str | None = None
    entity_id: int | None = None
    actor_id: int | None = None
    action: str | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None


class ActivityRepository(TenantRepository[Activity]):
    model = Activity

    async def list(self, f: ActivityFilters, limit: int, offset: int) -> tuple[Sequence[Activity], int]:
        stmt = self.base()
        if f.entity_type is not None:
            stmt = stmt.where(Activity.entity_type == f.entity_type)
        if f.entity_id is not None:
            stmt = stmt.where(Activity.entity_id == f.entity_id)
        if f.actor_id is not None:
            stmt = stmt.where(Activity.actor_id == f.actor_id)
        if f.action is not None:
            stmt = stmt.where(Activity.action == f.action)
        if f.date_from is not None:
            stmt = stmt.where(Activity.created_at >= f.date_from)
        if f.date_to is not None:
            stmt = stmt.where(Activity.created_at <= f.date_to)
        return await self.page(stmt, [Activity.created_at.desc(), Activity.id.desc()], limit, offset)
