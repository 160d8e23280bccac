"""Contacts: people the organization works with."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from crm.contacts.repository import ContactFilters, ContactRepository
from crm.contacts.schemas import ContactCreate, ContactReplace, ContactUpdate
from crm.core.errors import Conflict, UnprocessableEntity
from crm.core.validators import normalize_phone
from crm.custom_fields.service import CustomFieldService
from crm.models import Contact
from crm.records.service import RecordService

CREATED_FIELDS = [
    "full_name", "email", "phone", "phone_raw", "company_id", "job_title", "age", "gender", "country",
    "address", "tags", "owner_id", "custom_fields", "notes", "source",
]


def phone_fields(raw: str | None) -> dict[str, str | None]:
    """`phone` in E.164 and `phone_raw` as typed; 422 when it cannot be a phone number."""
    if raw is None or not raw.strip():
        return {"phone": None, "phone_raw": None}
    try:
        return {"phone": normalize_phone(raw), "phone_raw": raw}
    except ValueError as exc:
        raise UnprocessableEntity(
            f"phone: {exc}", errors=[{"loc": ["body", "phone"], "msg": str(exc), "type": "value_error"}]
        ) from None


class ContactService(RecordService[Contact]):
    entity_type = "contact"
    repository_class = ContactRepository
    unique_errors = {
        "uq_contact_org_email_live": ("contact_email_taken", "A contact with this email already exists"),
    }
    repo: ContactRepository

    async def _validated(self, values: dict[str, Any], existing: Contact | None, partial: bool) -> dict[str, Any]:
        await self.check_refs(company_id=values.get("company_id"), user_ids={"owner_id": values.get("owner_id")})
        if "phone" in values:
            values.update(phone_fields(values["phone"]))
        if "custom_fields" in values and (values["custom_fields"] is not None or not partial):
            values["custom_fields"] = await CustomFieldService(self.db, self.tenant.organization_id).validate(
                "contact", values["custom_fields"],
                existing=existing.custom_fields if existing else None, partial=partial,
            )
        elif not partial or existing is None:
            values["custom_fields"] = await CustomFieldService(self.db, self.tenant.organization_id).validate(
                "contact", {}
            )
        else:
            values.pop("custom_fields", None)
        return values

    async def create(self, data: ContactCreate, *, source: str = "manual") -> Contact:
        values = await self._validated(data.model_dump(), None, partial=False)
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
        values = data.model_dump(exclude_unset=True)
        for required in ("full_name",):
            if required in values and values[required] is None:
                raise UnprocessableEntity(f"{required} cannot be null")
        if "tags" in values and values["tags"] is None:
            values["tags"] = []
        values = await self._validated(values, contact, partial=True)
        await self.write(contact, values, if_match)
        return contact

    async def delete(self, contact_id: int) -> None:
        contact = await self.get_for_update(contact_id)
        if await self.repo.has_open_deals(contact_id):
            raise Conflict("The contact has open deals; close or reassign them first",
                           code="contact_has_open_deals")
        await self.soft_delete(contact)
