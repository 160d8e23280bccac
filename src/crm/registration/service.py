"""Public sign-ups from the online shop (`POST /register`, SPEC §11): each becomes a contact."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from crm.config import Settings
from crm.contacts.exceptions import ContactEmailTaken
from crm.contacts.schemas import ContactCreate
from crm.contacts.service import ContactService
from crm.core.redis import SafeRedis
from crm.core.schemas import from_row
from crm.models import Contact, Organization
from crm.organizations.dependencies import Tenant
from crm.organizations.service import OrganizationService
from crm.registration.exceptions import EmailAlreadyRegistered, RegistrationNotConfigured
from crm.registration.schemas import RegistrationRequest


class RegistrationService:
    def __init__(self, db: AsyncSession, redis: SafeRedis, settings: Settings) -> None:
        self.db = db
        self.redis = redis
        self.settings = settings

    async def organization(self) -> Organization:
        """`REGISTRATION_ORGANIZATION` (slug or id), else the admin's organization; 503 when neither
        names a live organization."""
        ref = (self.settings.registration_organization or self.settings.admin_organization or "").strip()
        org = await OrganizationService(self.db).find(ref) if ref else None
        if org is None:
            raise RegistrationNotConfigured()
        return org

    async def register(self, data: RegistrationRequest) -> Contact:
        """A contact with `source=registration`, written by nobody (the activity's actor is null).
        The live-email unique index makes concurrent duplicates safe: all but one answer 400."""
        org = await self.organization()
        contacts = ContactService(self.db, Tenant(org.id, frozenset()), self.redis)
        contact = from_row(ContactCreate, data, full_name=data.name)
        try:
            return await contacts.create(contact, source="registration", lenient_phone=True)
        except ContactEmailTaken:
            raise EmailAlreadyRegistered() from None
