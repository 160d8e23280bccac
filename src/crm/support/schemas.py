from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import Field

from crm.core.schemas import InputModel, IsoDate, ReadModel
from crm.core.validators import MoneyIn, MoneyOut
from crm.records.schemas import RefId

SupportType = Literal["finance", "credit", "land", "equipment", "technical"]
Unit = Literal["RUB", "pieces", "meters", "square_meters", "cubic_meters", "hectares"]
SupportStatus = Literal["requested", "approved", "rejected", "provided"]
DecisionType = Literal["expert_group", "interdepartmental_commission"]
DecisionResult = Literal["approved", "rejected", "rework"]

#: The units each type of support is measured in (PROJECTS.md): money, pieces, or a length, area or
#: volume of land.
UNITS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "finance": ("RUB",),
    "credit": ("RUB",),
    "equipment": ("pieces",),
    "technical": ("pieces",),
    "land": ("meters", "square_meters", "cubic_meters", "hectares"),
}


class SupportCreate(InputModel):
    """A new support measure; it starts `requested`. `unit` may be omitted when the type has one
    unit only (finance and credit → RUB, equipment and technical → pieces); land needs one."""

    type: SupportType
    unit: Unit | None = None
    amount: MoneyIn | None = Field(default=None, description="Decimal with 2 places, in `unit`")
    program_id: RefId = None
    provider_id: RefId = None
    date_start: IsoDate | None = None
    date_end: IsoDate | None = Field(default=None, description="Not before `date_start`")
    description: str | None = Field(default=None, max_length=10_000)


class SupportUpdate(InputModel):
    """PATCH: only the fields sent change. `status` may only be set to `provided` (from `approved`);
    approval and rejection come from decisions."""

    type: SupportType | None = None
    unit: Unit | None = None
    amount: MoneyIn | None = None
    program_id: RefId = None
    provider_id: RefId = None
    date_start: IsoDate | None = None
    date_end: IsoDate | None = None
    description: str | None = Field(default=None, max_length=10_000)
    status: Literal["provided"] | None = None


class SupportRead(ReadModel):
    id: int
    project_id: int
    program_id: int | None
    provider_id: int | None
    type: str
    amount: MoneyOut | None
    unit: str
    date_start: date | None
    date_end: date | None
    description: str | None
    status: str
    version: int
    created_at: datetime
    updated_at: datetime


class DecisionCreate(InputModel):
    """A committee decision. `decided_by` is the caller, set by the server. Text and the protocol
    number are stored exactly as typed."""

    decision_type: DecisionType
    decision_date: IsoDate
    protocol_number: str | None = Field(default=None, max_length=100)
    result: DecisionResult
    text: str | None = Field(default=None, max_length=20_000)


class DecisionRead(ReadModel):
    id: int
    support_id: int
    decision_type: str
    decision_date: date
    protocol_number: str | None
    result: str
    text: str | None
    decided_by: int | None
    created_at: datetime
