from __future__ import annotations

from crm.contacts.repository import ContactRepository
from crm.core.db import SessionDep
from crm.core.errors import NotFound


async def ensure_contact(db: SessionDep, organization_id: int, contact_id: int) -> None:
    """404 unless the contact is live and belongs to the organization."""
    if not await ContactRepository(db, organization_id).exists(contact_id):
        raise NotFound("Contact not found")
