"""Contacts: people the organization works with."""

from __future__ import annotations

from typing import Any, ClassVar

from crm.contacts.exceptions import ContactEmailTaken
from crm.contacts.repository import ContactRepository
from crm.contacts.schemas import ContactCreate, ContactDetails, ContactName
from crm.core.errors import Conflict, UnprocessableEntity
from crm.models import Company, Contact, Membership
from crm.records.crud import CrudService
from crm.records.fields import phone_fields
from crm.records.schemas import party_fields
from crm.records.service import UniqueErrors

#: What the activity of a new contact records: its body's fields, the phone as typed after the phone.
CREATED_FIELDS = [*party_fields(ContactName, ContactDetails), "source"]
CREATED_FIELDS.insert(CREATED_FIELDS.index("phone") + 1, "phone_raw")


class ContactService(CrudService[Contact]):
    entity_type = "contact"
    repository_class = ContactRepository
    unique_errors: ClassVar[UniqueErrors] = {"uq_contact_org_email_live": ContactEmailTaken}
    not_null = ("full_name",)
    #: The body's references, checked in the fast create's statement (`crm.records.fast_write`).
    references: ClassVar[dict[str, Any]] = {"company_id": Company, "owner_id": Membership}
    created_fields = CREATED_FIELDS
    repo: ContactRepository

    async def validated(
        self, values: dict[str, Any], existing: Contact | None, *, partial: bool
    ) -> dict[str, Any]:
        await self.check_refs(
            company_id=values.get("company_id"), user_ids={"owner_id": values.get("owner_id")}
        )
        if "phone" in values:
            values.update(phone_fields(values["phone"]))
        return values

    @staticmethod
    def quick_values(data: ContactCreate) -> dict[str, Any] | None:
        """The new row's values when the body needs no stored data checked but its references (see
        `references`); None for a body with custom fields or a phone that does not parse."""
        values = data.model_dump()
        if values["custom_fields"]:
            return None
        try:
            values.update(phone_fields(values["phone"]))
        except UnprocessableEntity:
            return None
        return {**values, "source": "manual"}

    async def create(
        self, data: ContactCreate, *, source: str = "manual", lenient_phone: bool = False
    ) -> Contact:
        """`lenient_phone` (`POST /register`, SPEC §19.13): a phone that does not parse is kept as typed in
        `phone_raw` with `phone` null, instead of a 422."""
        values = await self.prepared(
            data.model_dump(exclude={"phone"} if lenient_phone else None), None, partial=False
        )
        if lenient_phone:
            try:
                values.update(phone_fields(data.phone))
            except UnprocessableEntity:
                values.update(phone=None, phone_raw=data.phone)
        contact = Contact(organization_id=self.tenant.organization_id, source=source, **values)
        return await self.insert(contact, CREATED_FIELDS)

    async def check_delete(self, contact: Contact) -> None:
        if await self.repo.has_open_deals(contact.id):
            raise Conflict(
                "The contact has open deals; close or reassign them first", code="contact_has_open_deals"
            )
