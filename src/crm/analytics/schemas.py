"""Analytics answers (SPEC §7, §18 "Analytics"). Money is a string with 2 places in the organization's
currency; deals in other currencies are counted but not summed."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from pydantic import BaseModel, Field

from crm.core.validators import MoneyOut

ZERO = Decimal("0.00")


class StatusFigures(BaseModel):
    count: int
    amount: MoneyOut = Field(description="Sum over deals in the organization's currency")


class DealsByStatus(BaseModel):
    new: StatusFigures
    in_progress: StatusFigures
    won: StatusFigures
    lost: StatusFigures


class DealSummary(BaseModel):
    total_deals: int = Field(description="Live deals (deleted ones excluded), every currency")
    by_status: DealsByStatus
    won_amount: MoneyOut
    average_won_amount: MoneyOut = Field(
        description='Won amount / won deals in the organization\'s currency, half-up; "0.00" when none'
    )
    win_rate: float = Field(ge=0, le=1, description="won / (won + lost), unrounded; 0 when nothing is closed")
    new_last_30_days: int
    currency: str


class FunnelStage(BaseModel):
    stage: str
    name: str
    count: int = Field(description="Live deals now in this stage, whatever their status")
    amount: MoneyOut = Field(description="Their amount in the organization's currency")
    reached: int = Field(description="Live deals that ever entered this stage or a later one")
    conversion: float | None = Field(
        description="reached / the previous stage's reached; null for the first stage and when that is 0"
    )
    median_seconds_in_stage: float | None = Field(
        description="Median of completed stays in this stage (a stay ends at the deal's next stage move)"
    )


class Funnel(BaseModel):
    pipeline_id: int
    date_from: date | None = Field(description="Deals created on or after this UTC date")
    date_to: date | None = Field(description="Deals created on or before this UTC date")
    currency: str
    stages: list[FunnelStage]


class CrmMetrics(BaseModel):
    open_deals: int = Field(description="Live deals with status new or in_progress")
    pipeline_value: MoneyOut = Field(description="Amount of the open deals")
    won_this_month: StatusFigures = Field(description="Deals won (closed) since the 1st of this month, UTC")
    overdue_tasks: int = Field(description="Open or in-progress tasks whose due date has passed")
    currency: str


class TopProduct(BaseModel):
    product_id: int
    name: str
    quantity: float
    revenue: MoneyOut


class SalesMetrics(BaseModel):
    """Filled from MoySklad sales documents once the inventory module syncs them; until then
    `available` is false and every figure is zero or empty."""

    available: bool = Field(description="Whether sales data has been synced for the organization")
    date_from: date
    date_to: date
    revenue: MoneyOut
    orders: int
    average_check: MoneyOut
    top_products: list[TopProduct]
    low_stock_count: int
    currency: str


class Dashboard(BaseModel):
    crm: CrmMetrics
    sales: SalesMetrics
