"""Contacts: people the organization works with."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from crm.contacts.repository import ContactFilters, ContactRepository
from crm.contacts.schemas import ContactCreate, ContactReplace, ContactUpdate
from crm.core.errors import Conflict, UnprocessableEntity
from crm.models import Contact
from crm.records.fields import check_custom_fields, patch_values, phone_fields
from crm.records.service import RecordService

CREATED_FIELDS = [
    "full_name",
    "email",
    "phone",
    "phone_raw",
    "company_id",
    "job_title",
    "age",
    "gender",
    "country",
    "address",
    "tags",
    "owner_id",
    "custom_fields",
    "notes",
    "source",
]


class ContactService(RecordService[Contact]):
    entity_type = "contact"
    repository_class = ContactRepository
    unique_errors: ClassVar[dict[str, tuple[str, str]]] = {
        "uq_contact_org_email_live": ("contact_email_taken", "A contact with this email already exists"),
    }
    repo: ContactRepository

    async def _validated(
        self, values: dict[str, Any], existing: Contact | None, partial: bool
    ) -> dict[str, Any]:
        await self.check_refs(
            company_id=values.get("company_id"), user_ids={"owner_id": values.get("owner_id")}
        )
        if "phone" in values:
            values.update(phone_fields(values["phone"]))
        await check_custom_fields(
            self.db,
            self.tenant.organization_id,
            self.entity_type,
            values,
            existing.custom_fields if existing else None,
            partial=partial,
            redis=self.redis,
        )
        return values

    async def create(
        self, data: ContactCreate, *, source: str = "manual", lenient_phone: bool = False
    ) -> Contact:
        """`lenient_phone` (`POST /register`, SPEC §19.13): a phone that does not parse is kept as typed in
        `phone_raw` with `phone` null, instead of a 422."""
        values = await self._validated(
            data.model_dump(exclude={"phone"} if lenient_phone else None), None, partial=False
        )
        if lenient_phone:
            try:
                values.update(phone_fields(data.phone))
            except UnprocessableEntity:
                values.update(phone=None, phone_raw=data.phone)
        contact = Contact(organization_id=self.tenant.organization_id, source=source, **values)
        return await self.insert(contact, CREATED_FIELDS)

    async def list(
        self, filters: ContactFilters, sort: str | None, limit: int, offset: int
    ) -> tuple[Sequence[Contact], int]:
        return await self.repo.list(filters, sort, limit, offset)

    async def replace(self, contact_id: int, data: ContactReplace, if_match: str | None) -> Contact:
        contact = await self.get_for_update(contact_id)
        values = await self._validated(data.model_dump(), contact, partial=False)
        await self.write(contact, values, if_match)
        return contact

    async def update(self, contact_id: int, data: ContactUpdate, if_match: str | None) -> Contact:
        contact = await self.get_for_update(contact_id)
        values = await self._validated(patch_values(data, required=("full_name",)), contact, partial=True)
        await self.write(contact, values, if_match)
        return contact

    async def delete(self, contact_id: int) -> None:
        contact = await self.get_for_update(contact_id)
        if await self.repo.has_open_deals(contact_id):
            raise Conflict(
                "The contact has open deals; close or reassign them first", code="contact_has_open_deals"
            )
        await self.soft_delete(contact)
