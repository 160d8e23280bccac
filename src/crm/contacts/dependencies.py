from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query

from crm.contacts.repository import ContactFilters, ContactRepository
from crm.core.db import SessionDep
from crm.core.errors import NotFound
from crm.records.repository import RecordFilters
from crm.records.router import OptionalId, record_filters


async def ensure_contact(db: SessionDep, organization_id: int, contact_id: int) -> None:
    """404 unless the contact is live and belongs to the organization."""
    if not await ContactRepository(db, organization_id).exists(contact_id):
        raise NotFound("Contact not found")


async def contact_filters(
    common: Annotated[RecordFilters, Depends(record_filters("contact"))],
    q: Annotated[str | None, Query(max_length=200, description="Name, email, phone or company")] = None,
    email: Annotated[str | None, Query(max_length=320)] = None,
    company_id: OptionalId = None,
) -> ContactFilters:
    """The filters of `GET /contacts` (and its export)."""
    return ContactFilters(**vars(common), q=q, email=email, company_id=company_id)
