from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from crm.auth.passwords import NewPassword, PasswordInput
from crm.core.schemas import Email, InputModel, ReadModel


class UserRegister(InputModel):
    email: Email
    password: NewPassword
    full_name: str = Field(min_length=1, max_length=200)


class LoginRequest(InputModel):
    email: str = Field(min_length=1, max_length=320)
    password: PasswordInput


class RefreshRequest(InputModel):
    refresh_token: str = Field(min_length=1, max_length=4096)


class PasswordChange(InputModel):
    current_password: PasswordInput
    new_password: NewPassword


class TokenPair(ReadModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class UserBrief(ReadModel):
    id: int
    email: str
    full_name: str
    is_superuser: bool


class TokenResponse(TokenPair):
    """A token pair and who it belongs to (SPEC §20.3), so a client need not call `/auth/me`."""

    user: UserBrief


class UserRead(ReadModel):
    id: int
    email: str
    full_name: str
    is_active: bool
    is_superuser: bool
    created_at: datetime


class MembershipBrief(ReadModel):
    organization_id: int
    name: str
    role: str


class MeRead(UserRead):
    memberships: list[MembershipBrief]


class SessionRead(ReadModel):
    id: int
    created_at: datetime
    last_used_at: datetime
    user_agent: str | None
    ip: str | None
    current: bool
