from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.core.repository import TenantRepository, order_by_sort
from crm.records.repository import like_pattern


class EntryRepository(TenantRepository[Any]):
    """Entries of one dictionary table, scoped to the organization."""

    def __init__(self, session: AsyncSession, organization_id: int, model: type[Any]) -> None:
        super().__init__(session, organization_id)
        self.model = model

    def filtered(self, q: str | None, extra: dict[str, Any]) -> Select[tuple[Any]]:
        stmt = self.base()
        if q:
            stmt = stmt.where(self.model.name.ilike(like_pattern(q)))
        for field, value in extra.items():
            if value is not None:
                stmt = stmt.where(getattr(self.model, field) == value)
        return stmt

    async def list(
        self, q: str | None, extra: dict[str, Any], sort: str | None, limit: int, offset: int
    ) -> tuple[Sequence[Any], int]:
        sorts = {"created_at": self.model.created_at, "name": self.model.name}
        return await self.page(
            self.filtered(q, extra), order_by_sort(sort, sorts, self.model.id), limit, offset
        )

    async def name_taken(self, name: str, except_id: int | None = None) -> bool:
        stmt = self.base().where(func.lower(self.model.name) == name.lower())
        if except_id is not None:
            stmt = stmt.where(self.model.id != except_id)
        return (
            await self.session.execute(stmt.with_only_columns(self.model.id).limit(1))
        ).first() is not None

    async def in_use(self, entry_id: int, references: Sequence[Any]) -> bool:
        """True when any row (deleted projects included: they can be restored) points at the entry."""
        checks = [exists().where(column == entry_id) for column in references]
        return bool(await self.session.scalar(select(or_(*checks))))
