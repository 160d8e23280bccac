from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, or_, select

from crm.core.repository import TenantRepository, order_by_sort
from crm.models import Company, Contact, Deal

SORTS = {"created_at": Contact.created_at, "updated_at": Contact.updated_at, "full_name": Contact.full_name}
OPEN_DEAL_STATUSES = ("new", "in_progress")


@dataclass(frozen=True)
class ContactFilters:
    q: str | None = None
    email: str | None = None
    tag: str | None = None
    owner_id: int | None = None
    company_id: int | None = None
    source: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    custom_fields: dict[str, Any] = field(default_factory=dict)


def like_pattern(q: str) -> str:
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class ContactRepository(TenantRepository[Contact]):
    model = Contact

    def filtered(self, f: ContactFilters) -> Select[tuple[Contact]]:
        stmt = self.base()
        if f.q:
            pattern = like_pattern(f.q)
            companies = select(Company.id).where(
                Company.organization_id == self.organization_id,
                Company.deleted_at.is_(None),
                Company.name.ilike(pattern),
            )
            stmt = stmt.where(
                or_(
                    Contact.full_name.ilike(pattern),
                    Contact.email.ilike(pattern),
                    Contact.phone.ilike(pattern),
                    Contact.phone_raw.ilike(pattern),
                    Contact.company_id.in_(companies),
                )
            )
        if f.email:
            stmt = stmt.where(func.lower(Contact.email) == f.email.lower())
        if f.tag:
            stmt = stmt.where(Contact.tags.contains([f.tag]))
        if f.owner_id is not None:
            stmt = stmt.where(Contact.owner_id == f.owner_id)
        if f.company_id is not None:
            stmt = stmt.where(Contact.company_id == f.company_id)
        if f.source:
            stmt = stmt.where(Contact.source == f.source)
        if f.created_from is not None:
            stmt = stmt.where(Contact.created_at >= f.created_from)
        if f.created_to is not None:
            stmt = stmt.where(Contact.created_at <= f.created_to)
        if f.custom_fields:
            stmt = stmt.where(Contact.custom_fields.contains(f.custom_fields))
        return stmt

    async def list(
        self, f: ContactFilters, sort: str | None, limit: int, offset: int
    ) -> tuple[Sequence[Contact], int]:
        return await self.page(self.filtered(f), order_by_sort(sort, SORTS, Contact.id), limit, offset)

    async def has_open_deals(self, contact_id: int) -> bool:
        stmt = select(Deal.id).where(
            and_(
                Deal.organization_id == self.organization_id,
                Deal.contact_id == contact_id,
                Deal.deleted_at.is_(None),
                Deal.status.in_(OPEN_DEAL_STATUSES),
            )
        )
        return (await self.session.execute(stmt.limit(1))).first() is not None
