from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel

from crm.core.validators import MoneyOut

GroupBy = Literal["status", "industry", "district", "program", "curator"]
ReportFormat = Literal["json", "csv", "xlsx"]
ProjectStatus = Literal[
    "draft",
    "submitted",
    "in_committee",
    "supported",
    "rejected",
    "completed",
    "archived",
    "frozen",
    "withdrawn",
]


class ReportSums(BaseModel):
    count: int
    own_funds_amount: MoneyOut
    requested_support_amount: MoneyOut
    approved_support_amount: MoneyOut
    jobs_count: int
    tax_revenue_amount: MoneyOut


class ReportRow(ReportSums):
    #: The status code or the id of the industry, district, program or curator; null for "not set".
    key: str | int | None
    label: str


class ProjectReport(BaseModel):
    group_by: GroupBy
    rows: list[ReportRow]
    totals: ReportSums


ZERO = Decimal("0.00")
