"""Dictionaries: names unique per organization (case-insensitively); an entry in use cannot be deleted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm.core.errors import Conflict, NotFound
from crm.dictionaries.repository import EntryRepository
from crm.models import District, Industry, Project, SupportMeasure, SupportProgram, SupportProvider
from crm.records.fields import patch_values


@dataclass(frozen=True)
class Dictionary:
    """One dictionary: its URL segment, table, the name used in messages and codes, and the
    columns of other tables that reference its entries."""

    slug: str
    model: type[Any]
    entity: str
    label: str
    references: tuple[Any, ...]


INDUSTRIES = Dictionary("industries", Industry, "industry", "Industry", (Project.industry_id,))
DISTRICTS = Dictionary("districts", District, "district", "District", (Project.district_id,))
PROGRAMS = Dictionary(
    "support-programs", SupportProgram, "support_program", "Support program", (SupportMeasure.program_id,)
)
PROVIDERS = Dictionary("providers", SupportProvider, "provider", "Provider", (SupportMeasure.provider_id,))
DICTIONARIES = (INDUSTRIES, DISTRICTS, PROGRAMS, PROVIDERS)


class EntryInUse(Conflict):
    code = "dictionary_entry_in_use"


class DictionaryService:
    def __init__(self, db: AsyncSession, organization_id: int, dictionary: Dictionary) -> None:
        self.db = db
        self.organization_id = organization_id
        self.dictionary = dictionary
        self.repo = EntryRepository(db, organization_id, dictionary.model)

    @property
    def not_found(self) -> NotFound:
        return NotFound(f"{self.dictionary.label} not found")

    def taken(self) -> Conflict:
        return Conflict(
            f"{self.dictionary.label} with this name already exists",
            code=f"{self.dictionary.entity}_name_taken",
        )

    async def list(
        self, q: str | None, extra: dict[str, Any], sort: str | None, limit: int, offset: int
    ) -> tuple[Sequence[Any], int]:
        return await self.repo.list(q, extra, sort, limit, offset)

    async def get(self, entry_id: int, *, for_update: bool = False) -> Any:
        entry = await self.repo.get(entry_id, for_update=for_update)
        if entry is None:
            raise self.not_found
        return entry

    async def exists(self, entry_id: int) -> bool:
        return await self.repo.exists(entry_id)

    async def create(self, data: BaseModel) -> Any:
        values = data.model_dump()
        if await self.repo.name_taken(values["name"]):
            raise self.taken()
        entry = self.dictionary.model(organization_id=self.organization_id, **values)
        self.repo.add(entry)
        await self._flush()
        return entry

    async def update(self, entry_id: int, data: BaseModel) -> Any:
        entry = await self.get(entry_id, for_update=True)
        values = patch_values(data, required=tuple(type(data).model_fields), lists=())
        if "name" in values and await self.repo.name_taken(values["name"], except_id=entry.id):
            raise self.taken()
        changed = False
        for field, value in values.items():
            if getattr(entry, field) != value:
                setattr(entry, field, value)
                changed = True
        if changed:
            entry.updated_at = datetime.now(UTC)
            await self._flush()
        return entry

    async def delete(self, entry_id: int) -> None:
        entry = await self.get(entry_id, for_update=True)
        if await self.repo.in_use(entry.id, self.dictionary.references):
            raise EntryInUse(f"{self.dictionary.label} is in use and cannot be deleted")
        try:
            async with self.db.begin_nested():
                await self.db.delete(entry)
                await self.db.flush()
        except IntegrityError:  # referenced meanwhile by a concurrent write
            raise EntryInUse(f"{self.dictionary.label} is in use and cannot be deleted") from None

    async def _flush(self) -> None:
        """Flush; a concurrent insert of the same name still ends as the 409 (unique index)."""
        try:
            async with self.db.begin_nested():
                await self.db.flush()
        except IntegrityError as exc:
            if "uq_" in str(exc.orig) and "_name" in str(exc.orig):
                raise self.taken() from None
            raise
