from __future__ import annotations

from datetime import datetime

from pydantic import Field

from crm.core.schemas import Email, InputModel, ReadModel
from crm.organizations.permissions import Role

SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"


class OrganizationCreate(InputModel):
    name: str = Field(min_length=1, max_length=200)
    slug: str | None = Field(default=None, min_length=1, max_length=100, pattern=SLUG_PATTERN)
    currency: str = Field(default="RUB", pattern=CURRENCY_PATTERN)


class OrganizationUpdate(InputModel):
    """PUT body: the editable fields; omitted optional ones keep their value."""

    name: str = Field(min_length=1, max_length=200)
    slug: str | None = Field(default=None, min_length=1, max_length=100, pattern=SLUG_PATTERN)
    currency: str | None = Field(default=None, pattern=CURRENCY_PATTERN)


class OrganizationRead(ReadModel):
    id: int
    name: str
    slug: str
    currency: str
    version: int
    created_at: datetime
    updated_at: datetime
    role: str | None = None


class MemberAdd(InputModel):
    email: Email
    role: Role = Role.MEMBER


class MemberUpdate(InputModel):
    role: Role


class MemberRead(ReadModel):
    user_id: int
    email: str
    full_name: str
    role: str
    is_active: bool
    created_at: datetime
