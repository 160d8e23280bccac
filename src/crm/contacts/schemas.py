from __future__ import annotations

from pydantic import Field

from crm.core.schemas import InputModel, LenientEmail, ReadModel
from crm.records.schemas import PartyFields, PartyRead, RefId, Source, example, patch_of, replace_of

__all__ = ["ContactCreate", "ContactRead", "ContactReplace", "ContactUpdate", "Source"]


class ContactName(InputModel):
    full_name: str = Field(min_length=1, max_length=200)


class ContactDetails(InputModel):
    """A contact's own fields of a POST or PUT body."""

    email: LenientEmail | None = None
    phone: str | None = Field(default=None, max_length=32, description="Any common format; stored as E.164")
    company_id: RefId = None
    job_title: str | None = Field(default=None, max_length=200)
    age: int | None = Field(default=None, ge=0, le=150)
    gender: str | None = Field(default=None, max_length=20)
    country: str | None = Field(default=None, max_length=100)


class ContactCreate(ContactName, PartyFields, ContactDetails):
    model_config = example("ContactCreate")


ContactReplace = replace_of(
    ContactCreate, "ContactReplace", "PUT: every editable field; an omitted one is cleared."
)


ContactUpdate = patch_of(
    "ContactUpdate", ContactName, ContactDetails, PartyFields, doc="PATCH: only the fields sent change."
)


class ContactReadDetails(ReadModel):
    id: int
    full_name: str
    email: str | None
    phone: str | None
    phone_raw: str | None
    company_id: int | None
    job_title: str | None
    age: int | None
    gender: str | None
    country: str | None


class ContactRead(PartyRead, ContactReadDetails):
    pass
