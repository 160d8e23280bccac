"""Base repository for tenant-owned tables: every statement starts scoped to one organization."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import orjson
from sqlalchemy import Select, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from crm.core.rows import TenantRecord

M = TypeVar("M", bound=TenantRecord)
S = TypeVar("S", bound=Select[Any])


class TenantRepository(Generic[M]):
    """`base()` already filters the organization (and soft-deleted rows, when the model has them),
    so a row of another organization is simply not found."""

    model: type[M]
    #: Set by a service that holds Redis: list totals then come from the organization's cache
    #: (exact: every write through the services bumps the organization's cache generation).
    total_cache: Callable[[str, Callable[[], Awaitable[int]]], Awaitable[int]] | None = None

    def __init__(self, session: AsyncSession, organization_id: int) -> None:
        self.session = session
        self.organization_id = organization_id

    @property
    def soft_deletes(self) -> bool:
        return "deleted_at" in self.model.__table__.c

    def base(self, *, include_deleted: bool = False) -> Select[tuple[M]]:
        stmt = select(self.model).where(self.model.organization_id == self.organization_id)
        if self.soft_deletes and not include_deleted:
            stmt = stmt.where(self.model.__table__.c.deleted_at.is_(None))
        return stmt

    async def get(self, row_id: int, *, include_deleted: bool = False, for_update: bool = False) -> M | None:
        stmt = self.base(include_deleted=include_deleted).where(self.model.id == row_id)
        if for_update:
            stmt = stmt.with_for_update()
        result = await self.session.execute(stmt)
        return result.scalar_one_or_none()

    async def exists(self, row_id: int) -> bool:
        stmt = self.base().where(self.model.id == row_id).with_only_columns(self.model.id)
        return (await self.session.execute(stmt.limit(1))).first() is not None

    async def page(
        self, stmt: Select[tuple[M]], order_by: Sequence[Any], limit: int, offset: int
    ) -> tuple[Sequence[M], int]:
        """One page of `stmt` and the total count of rows it matches."""
        count_stmt = stmt.with_only_columns(func.count(), maintain_column_froms=True).order_by(None)

        async def count() -> int:
            return int(await self.session.scalar(count_stmt) or 0)

        if self.total_cache is not None:
            # The query text and its parameters identify the total within the organization.
            compiled = count_stmt.compile(dialect=postgresql.dialect())  # type: ignore[no-untyped-call]
            signature = compiled.string + orjson.dumps(compiled.params, default=str).decode()
            total = await self.total_cache(signature, count)
        else:
            total = await count()
        rows = await self.session.execute(stmt.order_by(*order_by).limit(limit).offset(offset))
        return rows.scalars().all(), total

    def add(self, row: M) -> M:
        self.session.add(row)
        return row


def where_equal(stmt: S, model: Any, filters: object, *names: str) -> S:
    """`stmt` narrowed by the filters `names` that are set (not None) on `filters`: each to the rows
    whose column of the same name on `model` equals it."""
    for name in names:
        value = getattr(filters, name)
        if value is not None:
            stmt = stmt.where(getattr(model, name) == value)
    return stmt


def order_by_sort(
    sort: str | None, allowed: dict[str, InstrumentedAttribute[Any]], tiebreak: InstrumentedAttribute[Any]
) -> list[Any]:
    """`sort=field` / `sort=-field` (already validated against `allowed`) → ORDER BY clauses.
    Without a sort: newest first."""
    if not sort:
        return [allowed["created_at"].desc(), tiebreak.desc()]
    column = allowed[sort.lstrip("-")]
    if sort.startswith("-"):
        return [column.desc().nulls_last(), tiebreak.desc()]
    return [column.asc().nulls_last(), tiebreak.asc()]
