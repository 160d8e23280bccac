"""Query pieces shared by the CRM record lists (contacts, companies, ...)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from sqlalchemy import ColumnElement, Select, or_

from crm.core.repository import TenantRepository, order_by_sort
from crm.core.rows import TenantRecord

T = TypeVar("T", bound=tuple[Any, ...])
_PHONE_LIKE = re.compile(r"^[\d\s()+\-.]+$")


@dataclass(frozen=True)
class RecordFilters:
    """Filters every CRM record list takes."""

    tag: str | None = None
    owner_id: int | None = None
    source: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    #: `cf.<key>=value` filters as a JSONB containment document (already validated).
    custom_fields: dict[str, Any] = field(default_factory=dict)


def like_pattern(q: str) -> str:
    """`%q%` for ILIKE with the wildcards of `q` escaped."""
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def phone_match(column: Any, q: str) -> ColumnElement[bool] | None:
    """Match an E.164 column against a search typed like a phone (`8 921 345`, `+7 (921) 345-19`):
    its digits, with a leading trunk `8` also read as `7` (Russian habit). None when `q` is no phone."""
    digits = re.sub(r"\D", "", q)
    if len(digits) < 3 or not _PHONE_LIKE.match(q):
        return None
    candidates = {digits}
    if digits.startswith("8"):
        candidates.add("7" + digits[1:])
    return or_(*(column.like(f"%{c}%") for c in sorted(candidates)))


def filter_records(stmt: Select[T], model: Any, f: RecordFilters) -> Select[T]:
    """Apply the common filters to a statement over `model`."""
    if f.tag:
        stmt = stmt.where(model.tags.contains([f.tag]))
    if f.owner_id is not None:
        stmt = stmt.where(model.owner_id == f.owner_id)
    if f.source:
        stmt = stmt.where(model.source == f.source)
    if f.created_from is not None:
        stmt = stmt.where(model.created_at >= f.created_from)
    if f.created_to is not None:
        stmt = stmt.where(model.created_at <= f.created_to)
    if f.custom_fields:
        stmt = stmt.where(model.custom_fields.contains(f.custom_fields))
    return stmt


M = TypeVar("M", bound=TenantRecord)


class RecordRepository(TenantRepository[M]):
    """A record type's queries: `filtered` applies the list's filters, `sorts` names the columns the
    list may be sorted by (newest first by default, `id` breaking ties)."""

    sorts: ClassVar[dict[str, Any]]

    def filtered(self, f: Any) -> Select[tuple[M]]:
        raise NotImplementedError

    async def list(self, f: Any, sort: str | None, limit: int, offset: int) -> tuple[Sequence[M], int]:
        tiebreak = self.model.id
        return await self.page(self.filtered(f), order_by_sort(sort, self.sorts, tiebreak), limit, offset)
