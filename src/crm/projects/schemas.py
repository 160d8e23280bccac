from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from crm.core.schemas import BIGINT_MAX, InputModel, ReadModel
from crm.core.validators import MoneyIn, MoneyOut

#: A reference to another row of the organization; a JSON integer only (no `true`, no `"5"`).
RefId = Annotated[int | None, Field(ge=1, le=BIGINT_MAX, strict=True)]

Status = Literal[
    "draft",
    "submitted",
    "in_committee",
    "supported",
    "completed",
    "archived",
    "frozen",
    "rejected",
    "withdrawn",
]
TeamRole = Literal["curator", "editor", "viewer"]
JobsCount = Field(default=None, ge=0, le=2_147_483_647, strict=True, description="Work places created")


class ProjectFields(InputModel):
    description: str | None = Field(default=None, max_length=20_000)
    client_id: RefId = Field(default=None, description="The investor: a company of the organization")
    industry_id: RefId = None
    district_id: RefId = None
    city: str | None = Field(default=None, max_length=200)
    address: str | None = Field(default=None, max_length=500)
    own_funds_amount: MoneyIn | None = None
    requested_support_amount: MoneyIn | None = None
    jobs_count: int | None = JobsCount
    tax_revenue_amount: MoneyIn | None = Field(default=None, description="Taxes to the budget")
    external_code: str | None = Field(
        default=None, min_length=1, max_length=100, description="Unique in the organization; the import key"
    )
    curator_id: RefId = Field(default=None, description="The responsible specialist (a member)")
    custom_fields: dict[str, Any] = Field(default_factory=dict)


class ProjectCreate(ProjectFields):
    """A new project starts in `draft`; its status changes only through `POST /{id}/status`."""

    name: str = Field(min_length=1, max_length=500)


class ProjectReplace(ProjectCreate):
    """PUT: every editable field; an omitted one is cleared. `status` is not editable here."""


class ProjectUpdate(InputModel):
    """PATCH: only the fields sent change. `status` is not editable here."""

    name: str | None = Field(default=None, min_length=1, max_length=500)
    description: str | None = Field(default=None, max_length=20_000)
    client_id: RefId = None
    industry_id: RefId = None
    district_id: RefId = None
    city: str | None = Field(default=None, max_length=200)
    address: str | None = Field(default=None, max_length=500)
    own_funds_amount: MoneyIn | None = None
    requested_support_amount: MoneyIn | None = None
    jobs_count: int | None = JobsCount
    tax_revenue_amount: MoneyIn | None = None
    external_code: str | None = Field(default=None, min_length=1, max_length=100)
    curator_id: RefId = None
    custom_fields: dict[str, Any] | None = None


class ProjectRead(ReadModel):
    id: int
    name: str
    description: str | None
    client_id: int | None
    industry_id: int | None
    district_id: int | None
    city: str | None
    address: str | None
    own_funds_amount: MoneyOut | None
    requested_support_amount: MoneyOut | None
    jobs_count: int | None
    tax_revenue_amount: MoneyOut | None
    status: str
    frozen_from: str | None = Field(description="While frozen: the status a resume returns to")
    external_code: str | None
    curator_id: int | None
    custom_fields: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime


class StatusMove(InputModel):
    status: Status
    comment: str | None = Field(
        default=None, min_length=1, max_length=5000, description="Required for rework and rejection"
    )


class TransitionRead(ReadModel):
    to: str
    allowed: bool
    reasons: list[str] = Field(description="Why the move is not allowed now (empty when it is)")
    comment_required: bool


class TransitionsRead(ReadModel):
    current: str
    transitions: list[TransitionRead]


class HistoryRead(ReadModel):
    id: int
    from_status: str | None
    to_status: str
    actor_id: int | None
    comment: str | None
    created_at: datetime


class TeamAssign(InputModel):
    user_id: int = Field(ge=1, le=BIGINT_MAX, strict=True)
    role: TeamRole


class TeamMemberRead(ReadModel):
    project_id: int
    user_id: int
    role: str
    full_name: str
    email: str
    created_at: datetime


class UserProjectRead(ProjectRead):
    """A project of `GET /users/{user_id}/projects`, with the user's role on its team."""

    team_role: str
