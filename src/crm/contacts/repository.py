from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, and_, func, or_, select

from crm.models import Company, Contact, Deal
from crm.records.repository import (
    RecordFilters,
    RecordRepository,
    filter_records,
    like_pattern,
    phone_match,
)

SORTS = {"created_at": Contact.created_at, "updated_at": Contact.updated_at, "full_name": Contact.full_name}
OPEN_DEAL_STATUSES = ("new", "in_progress")


@dataclass(frozen=True)
class ContactFilters(RecordFilters):
    q: str | None = None
    email: str | None = None
    company_id: int | None = None


class ContactRepository(RecordRepository[Contact]):
    model = Contact
    sorts = SORTS

    def filtered(self, f: ContactFilters) -> Select[tuple[Contact]]:
        stmt = filter_records(self.base(), Contact, f)
        if f.q:
            pattern = like_pattern(f.q)
            companies = select(Company.id).where(
                Company.organization_id == self.organization_id,
                Company.deleted_at.is_(None),
                Company.name.ilike(pattern),
            )
            matches: list[ColumnElement[bool]] = [
                Contact.full_name.ilike(pattern),
                Contact.email.ilike(pattern),
                Contact.phone.ilike(pattern),
                Contact.phone_raw.ilike(pattern),
                Contact.company_id.in_(companies),
            ]
            phone = phone_match(Contact.phone, f.q)
            if phone is not None:
                matches.append(phone)
            stmt = stmt.where(or_(*matches))
        if f.email:
            stmt = stmt.where(func.lower(Contact.email) == f.email.strip().lower())
        if f.company_id is not None:
            stmt = stmt.where(Contact.company_id == f.company_id)
        return stmt

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
