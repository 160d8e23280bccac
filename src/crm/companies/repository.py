from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Select, func, or_

from crm.core.repository import TenantRepository
from crm.models import Company, Deal
from crm.records.repository import RecordFilters, RecordRepository, filter_records, like_pattern

SORTS = {"created_at": Company.created_at, "updated_at": Company.updated_at, "name": Company.name}


@dataclass(frozen=True)
class CompanyFilters(RecordFilters):
    q: str | None = None
    inn: str | None = None
    industry: str | None = None


class CompanyRepository(RecordRepository[Company]):
    model = Company
    sorts = SORTS

    def filtered(self, f: CompanyFilters) -> Select[tuple[Company]]:
        stmt = filter_records(self.base(), Company, f)
        if f.q:
            pattern = like_pattern(f.q)
            stmt = stmt.where(
                or_(Company.name.ilike(pattern), Company.inn.like(pattern), Company.email.ilike(pattern))
            )
        if f.inn:
            stmt = stmt.where(Company.inn == f.inn.strip())
        if f.industry:
            stmt = stmt.where(func.lower(Company.industry) == f.industry.strip().lower())
        return stmt


class CompanyDealRepository(TenantRepository[Deal]):
    """The live deals of a company, read straight from the deal table."""

    model = Deal

    async def of_company(self, company_id: int, limit: int, offset: int) -> tuple[Sequence[Deal], int]:
        stmt = self.base().where(Deal.company_id == company_id)
        return await self.page(stmt, [Deal.created_at.desc(), Deal.id.desc()], limit, offset)
