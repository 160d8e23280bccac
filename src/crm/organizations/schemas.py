from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from crm.core.schemas import Email, InputModel, ReadModel
from crm.organizations.permissions import BUILT_IN_ROLES, CUSTOM_ROLE_PERMISSIONS, OWNER_ONLY, Role

SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"
ROLE_NAME_PATTERN = r"^[a-z][a-z0-9_-]*$"

RoleName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=50,
        pattern=ROLE_NAME_PATTERN,
        description="`owner`, `admin`, `manager`, `member` or the name of a custom role of the organization",
    ),
]


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
    role: RoleName = Role.MEMBER.value


class MemberUpdate(InputModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"role": "manager"}]})

    role: RoleName


class MemberRead(ReadModel):
    user_id: int
    email: str
    full_name: str
    role: str
    is_active: bool
    created_at: datetime


class RoleCreate(InputModel):
    """A custom role: a name (not one of the built-in four) and the permissions it grants."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "auditor", "permissions": ["contacts:read", "deals:read"]}]}
    )

    name: RoleName
    permissions: list[str] = Field(
        min_length=1, max_length=200, description="Permission strings of §5 (not the owner-only ones)"
    )

    @field_validator("name")
    @classmethod
    def _not_built_in(cls, name: str) -> str:
        if name in BUILT_IN_ROLES:
            raise ValueError(f"{name!r} is a built-in role and cannot be redefined")
        return name

    @field_validator("permissions")
    @classmethod
    def _known_permissions(cls, permissions: list[str]) -> list[str]:
        owner_only = sorted(set(permissions) & OWNER_ONLY)
        if owner_only:
            listed = ", ".join(owner_only)
            raise ValueError(f"owner-only permissions cannot be given to a custom role: {listed}")
        unknown = sorted(set(permissions) - CUSTOM_ROLE_PERMISSIONS)
        if unknown:
            raise ValueError(f"unknown permissions: {', '.join(p[:64] for p in unknown)}")
        return sorted(set(permissions))


class RoleReplace(RoleCreate):
    """PUT body: the whole role. Renaming moves its members along."""


class RoleListed(BaseModel):
    """A role in the organization's list: the built-in four (`built_in: true`, no id) and the
    custom ones."""

    name: str
    built_in: bool
    permissions: list[str]
    id: int | None = None
    version: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class PermissionRead(BaseModel):
    name: str
    description: str


class RoleRead(ReadModel):
    id: int
    name: str
    permissions: list[str]
    version: int
    created_at: datetime
    updated_at: datetime
