from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query

from crm.contacts.repository import ContactFilters
from crm.records.repository import RecordFilters
from crm.records.router import OptionalId, record_filters


async def contact_filters(
    common: Annotated[RecordFilters, Depends(record_filters("contact"))],
    q: Annotated[str | None, Query(max_length=200, description="Name, email, phone or company")] = None,
    email: Annotated[str | None, Query(max_length=320)] = None,
    company_id: OptionalId = None,
) -> ContactFilters:
    """The filters of `GET /contacts` (and its export)."""
    return ContactFilters(**vars(common), q=q, email=email, company_id=company_id)
