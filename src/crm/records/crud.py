"""The record flows the kit's routes call: list, replace, update and delete, written once.

A feature's service subclasses `CrudService` and says only what is its own: how a body is checked
and completed (`validated`), which fields a PATCH may not null, and what may block a delete."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, TypeVar, cast

from pydantic import BaseModel

from crm.core.rows import VersionedRecord
from crm.records.fields import check_custom_fields, patch_values
from crm.records.repository import RecordRepository
from crm.records.service import RecordService

M = TypeVar("M", bound=VersionedRecord)


class _Record(Protocol):
    custom_fields: dict[str, Any]


class CrudService(RecordService[M]):
    #: Fields a PATCH may not set to null (422).
    not_null: ClassVar[tuple[str, ...]] = ()
    #: List fields a PATCH turns from null into empty.
    patch_lists: ClassVar[tuple[str, ...]] = ("tags",)
    repo: RecordRepository[M]

    async def validated(self, values: dict[str, Any], existing: M | None, *, partial: bool) -> dict[str, Any]:
        """The values to store for a body: references checked, fields normalized and completed (422s).
        `existing` is the row a PUT or PATCH changes; `partial` is true for a PATCH. Custom fields are
        checked after it (`prepared`)."""
        return values

    async def prepared(self, values: dict[str, Any], existing: M | None, *, partial: bool) -> dict[str, Any]:
        """`validated`, then the custom fields checked against the organization's definitions."""
        values = await self.validated(values, existing, partial=partial)
        stored = cast(_Record, existing).custom_fields if existing is not None else None
        await check_custom_fields(
            self.db,
            self.tenant.organization_id,
            self.entity_type,
            values,
            stored,
            partial=partial,
            redis=self.redis,
        )
        return values

    async def check_delete(self, row: M) -> None:
        """Raise when the row may not be deleted (409, 403)."""

    async def list(self, filters: Any, sort: str | None, limit: int, offset: int) -> tuple[Sequence[M], int]:
        return await self.repo.list(filters, sort, limit, offset)

    async def replace(self, row_id: int, data: BaseModel, if_match: str | None) -> M:
        row = await self.get_for_update(row_id)
        values = await self.prepared(data.model_dump(), row, partial=False)
        await self.write(row, values, if_match)
        return row

    async def update(self, row_id: int, data: BaseModel, if_match: str | None) -> M:
        row = await self.get_for_update(row_id)
        values = patch_values(data, required=self.not_null, lists=self.patch_lists)
        await self.write(row, await self.prepared(values, row, partial=True), if_match)
        return row

    async def delete(self, row_id: int) -> None:
        row = await self.get_for_update(row_id)
        await self.check_delete(row)
        await self.soft_delete(row)
