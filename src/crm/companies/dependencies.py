from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query

from crm.companies.repository import CompanyFilters
from crm.records.repository import RecordFilters
from crm.records.router import record_filters


async def company_filters(
    common: Annotated[RecordFilters, Depends(record_filters("company"))],
    q: Annotated[str | None, Query(max_length=200, description="Name, INN or email")] = None,
    inn: Annotated[str | None, Query(max_length=12)] = None,
    industry: Annotated[str | None, Query(max_length=200, description="Exact, case-insensitive")] = None,
) -> CompanyFilters:
    """The filters of `GET /companies` (and its export)."""
    return CompanyFilters(**vars(common), q=q, inn=inn, industry=industry)
