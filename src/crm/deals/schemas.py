from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field

from crm.core.schemas import BIGINT_MAX, InputModel, ReadModel
from crm.core.validators import Currency, MoneyIn, MoneyOut
from crm.records.schemas import RefId, example

Status = Literal["new", "in_progress", "won", "lost"]
HistoryField = Literal["stage", "status"]
StageKey = Field(default=None, min_length=1, max_length=50, description="A stage key of the deal's pipeline")
LostReason = Field(
    default=None, min_length=1, max_length=2000, description="Required when the status is lost"
)
PipelineRef = Field(default=None, ge=1, le=BIGINT_MAX, description="Default: the default pipeline")


class DealFields(InputModel):
    amount: MoneyIn = Decimal("0.00")
    currency: Currency | None = Field(
        default=None, description="ISO 4217; default the organization's currency"
    )
    contact_id: RefId = None
    company_id: RefId = None
    owner_id: RefId = None
    pipeline_id: int | None = PipelineRef
    stage: str | None = StageKey
    status: Status | None = Field(default=None, description="Default `new`")
    expected_close_date: date | None = None
    lost_reason: str | None = LostReason
    custom_fields: dict[str, Any] = Field(default_factory=dict)
    notes: str | None = Field(default=None, max_length=10_000)


class DealCreate(DealFields):
    """`stage` defaults to the pipeline's first active stage, `status` to `new`."""

    model_config = example("DealCreate")

    title: str = Field(min_length=1, max_length=300)


class DealReplace(DealCreate):
    """PUT: every editable field; an omitted one is cleared, except `pipeline_id`, `stage` and `status`,
    which keep their value when omitted (a move goes by the same rules as `PATCH /stage` and `/status`)."""


class DealUpdate(InputModel):
    """PATCH: only the fields sent change."""

    title: str | None = Field(default=None, min_length=1, max_length=300)
    amount: MoneyIn | None = None
    currency: Currency | None = None
    contact_id: RefId = None
    company_id: RefId = None
    owner_id: RefId = None
    pipeline_id: int | None = PipelineRef
    stage: str | None = StageKey
    status: Status | None = None
    expected_close_date: date | None = None
    lost_reason: str | None = LostReason
    custom_fields: dict[str, Any] | None = None
    notes: str | None = Field(default=None, max_length=10_000)


class DealStageMove(InputModel):
    model_config = example("DealStageMove")

    stage: str = Field(min_length=1, max_length=50)


class DealStatusMove(InputModel):
    status: Status
    lost_reason: str | None = LostReason


class DealSummaryRead(ReadModel):
    """The fields of a deal every listing of deals shows."""

    id: int
    title: str
    amount: MoneyOut
    currency: str
    contact_id: int | None
    company_id: int | None
    owner_id: int | None
    pipeline_id: int
    stage: str
    status: str
    expected_close_date: date | None
    closed_at: datetime | None
    lost_reason: str | None
    custom_fields: dict[str, Any]


class DealRead(DealSummaryRead):
    notes: str | None
    source: str
    external_id: str | None
    sync_warnings: list[str]
    version: int
    created_at: datetime
    updated_at: datetime


class DealHistoryRead(ReadModel):
    id: int
    field: str
    from_value: str | None
    to_value: str
    actor_id: int | None
    created_at: datetime
