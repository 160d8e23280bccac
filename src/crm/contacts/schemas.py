from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ConfigDict, Field

from crm.core.schemas import InputModel, LenientEmail, ReadModel
from crm.core.validators import Tags
from crm.records.schemas import RefId, Source

__all__ = ["ContactCreate", "ContactRead", "ContactReplace", "ContactUpdate", "Source"]


class ContactFields(InputModel):
    email: LenientEmail | None = None
    phone: str | None = Field(default=None, max_length=32, description="Any common format; stored as E.164")
    company_id: RefId = None
    job_title: str | None = Field(default=None, max_length=200)
    age: int | None = Field(default=None, ge=0, le=150)
    gender: str | None = Field(default=None, max_length=20)
    country: str | None = Field(default=None, max_length=100)
    address: str | None = Field(default=None, max_length=500)
    tags: Tags = Field(default_factory=list)
    owner_id: RefId = None
    custom_fields: dict[str, Any] = Field(default_factory=dict)
    notes: str | None = Field(default=None, max_length=10_000)


class ContactCreate(ContactFields):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "full_name": "Anna Petrova",
                    "email": "anna.petrova@example.com",
                    "phone": "+7 912 345-67-89",
                    "job_title": "Purchasing manager",
                    "tags": ["b2b"],
                }
            ]
        }
    )

    full_name: str = Field(min_length=1, max_length=200)


class ContactReplace(ContactCreate):
    """PUT: every editable field; an omitted one is cleared."""


class ContactUpdate(InputModel):
    """PATCH: only the fields sent change."""

    full_name: str | None = Field(default=None, min_length=1, max_length=200)
    email: LenientEmail | None = None
    phone: str | None = Field(default=None, max_length=32)
    company_id: RefId = None
    job_title: str | None = Field(default=None, max_length=200)
    age: int | None = Field(default=None, ge=0, le=150)
    gender: str | None = Field(default=None, max_length=20)
    country: str | None = Field(default=None, max_length=100)
    address: str | None = Field(default=None, max_length=500)
    tags: Tags | None = None
    owner_id: RefId = None
    custom_fields: dict[str, Any] | None = None
    notes: str | None = Field(default=None, max_length=10_000)


class ContactRead(ReadModel):
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
    address: str | None
    source: str
    tags: list[str]
    owner_id: int | None
    custom_fields: dict[str, Any]
    notes: str | None
    external_id: str | None
    sync_warnings: list[str]
    version: int
    created_at: datetime
    updated_at: datetime
