from __future__ import annotations

from crm.companies.repository import CompanyRepository
from crm.core.db import SessionDep
from crm.core.errors import NotFound


async def ensure_company(db: SessionDep, organization_id: int, company_id: int) -> None:
    """404 unless the company is live and belongs to the organization."""
    if not await CompanyRepository(db, organization_id).exists(company_id):
        raise NotFound("Company not found")
