"""The activity log: one row per write, in the writer's transaction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm.activities.repository import ActivityFilters, ActivityRepository
from crm.core.errors import NotFound, UnprocessableEntity
from crm.models import Activity

_PLAIN = frozenset({str, int, bool, float, type(None)})


def jsonable(value: Any) -> Any:
    """A value as it is stored in `changes`/`payload` (JSONB)."""
    if type(value) in _PLAIN:
        return value
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def apply_changes(row: Any, values: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Set attributes on `row`; return `{field: [old, new]}` for those that really changed."""
    changes: dict[str, list[Any]] = {}
    for field, new in values.items():
        old = getattr(row, field)
        if old != new:
            changes[field] = [jsonable(old), jsonable(new)]
            setattr(row, field, new)
    return changes


def snapshot(row: Any, fields: Iterable[str]) -> dict[str, list[Any]]:
    """Changes of a created record: `{field: [None, value]}` for the fields that have a value."""
    return snapshot_of({field: getattr(row, field) for field in fields}, fields)


def snapshot_of(values: Mapping[str, Any], fields: Iterable[str]) -> dict[str, list[Any]]:
    """`snapshot` of a record given as its column values."""
    out: dict[str, list[Any]] = {}
    for field in fields:
        value = values.get(field)
        if value not in (None, [], {}, ""):
            out[field] = [None, jsonable(value)]
    return out


class ActivityService:
    def __init__(self, db: AsyncSession, organization_id: int, actor_id: int | None) -> None:
        self.db = db
        self.organization_id = organization_id
        self.actor_id = actor_id
        self.repo = ActivityRepository(db, organization_id)

    def record(
        self,
        entity_type: str,
        entity_id: int | None,
        action: str,
        changes: Mapping[str, Any] | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> Activity:
        activity = Activity(entity_id=entity_id, **self.values(entity_type, action, changes, payload))
        self.db.add(activity)
        return activity

    def values(
        self,
        entity_type: str,
        action: str,
        changes: Mapping[str, Any] | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The columns of an activity row but its `entity_id` (and `id`, `created_at`), for a caller
        that writes the row in a statement of its own (`crm.records.writes`)."""
        return {
            "organization_id": self.organization_id,
            "entity_type": entity_type,
            "action": action,
            "actor_id": self.actor_id,
            "changes": dict(changes or {}),
            "payload": jsonable(dict(payload or {})),
        }

    async def comment(self, entity_type: str, entity_id: int, text: str) -> Activity:
        activity = self.record(entity_type, entity_id, "comment", payload={"text": text})
        await self.db.flush()
        return activity

    async def list(self, filters: ActivityFilters, limit: int, offset: int) -> tuple[Sequence[Activity], int]:
        if filters.date_from and filters.date_to and filters.date_from > filters.date_to:
            raise UnprocessableEntity(
                "from is later than to",
                errors=[{"loc": ["query", "from"], "msg": "later than to", "type": "value_error"}],
            )
        return await self.repo.list(filters, limit, offset)

    async def get(self, activity_id: int) -> Activity:
        activity = await self.repo.get(activity_id)
        if activity is None:
            raise NotFound("Activity not found")
        return activity
