"""Sales, inventory and customer analytics answers (SPEC §7). Money is a 2-place string in the
organization's currency; `margin` is profit / revenue as a fraction (4 places), null without revenue."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field

from crm.core.schemas import Page
from crm.core.validators import MoneyOut
from crm.inventory.schemas import Quantity

GroupBy = Literal["day", "week", "month", "product", "customer"]
Segment = Literal["champions", "loyal", "new", "promising", "at_risk", "hibernating", "lost"]
SEGMENTS: tuple[Segment, ...] = ("champions", "loyal", "new", "promising", "at_risk", "hibernating", "lost")


class SalesFigures(BaseModel):
    revenue: MoneyOut = Field(description="Σ quantity × price × (1 − discount / 100) of posted shipments")
    cost: MoneyOut = Field(description="Σ quantity × unit cost (the position's cost, else the buy price)")
    profit: MoneyOut = Field(description="revenue − cost")
    margin: float | None = Field(description="profit / revenue, 4 places; null when revenue is 0")
    orders: int = Field(description="Posted shipments")
    quantity: float = Field(description="Units shipped")


class SalesReportRow(SalesFigures):
    key: str | None = Field(
        description="Period start date (day, week from Monday, month), product id, or customer "
        "(`company:<id>`, `contact:<id>`, `external:<counterparty id>`); null for unknown products/customers"
    )
    label: str | None = Field(
        description="`2025-03-01`, `2025-W10`, `2025-03`, the product's or customer's name"
    )


class SalesReport(BaseModel):
    group_by: GroupBy
    date_from: date
    date_to: date
    currency: str
    rows: list[SalesReportRow]
    totals: SalesFigures


class StoreValue(BaseModel):
    store_id: int | None
    store_name: str | None
    products: int = Field(description="Products with stock above zero")
    quantity: Quantity = Field(description="Units in stock (negative stock counts as none)")
    value_at_cost: MoneyOut = Field(description="Σ stock × buy price")
    value_at_sale_price: MoneyOut = Field(description="Σ stock × sale price")


class InventoryTotals(BaseModel):
    products: int
    quantity: Quantity
    value_at_cost: MoneyOut
    value_at_sale_price: MoneyOut


class StockItem(BaseModel):
    product_id: int
    name: str
    code: str | None
    stock: Quantity = Field(description="Total over all stores")
    min_stock: Quantity | None


class StockItems(BaseModel):
    count: int
    items: list[StockItem] = Field(description="The first 100 by name")


class InventoryReport(BaseModel):
    currency: str
    stores: list[StoreValue]
    totals: InventoryTotals
    low_stock: StockItems = Field(description="Live products whose total stock is below their min_stock")
    out_of_stock: StockItems = Field(description="Live products whose total stock is zero or less")


class SegmentFigures(BaseModel):
    segment: Segment
    customers: int
    revenue: MoneyOut


class CustomerRfm(BaseModel):
    key: str = Field(description="`company:<id>`, `contact:<id>` or `external:<counterparty id>`")
    company_id: int | None
    contact_id: int | None
    name: str | None
    last_purchase_at: datetime
    recency_days: int
    frequency: int = Field(description="Posted shipments up to `as_of`")
    monetary: MoneyOut = Field(description="Their revenue")
    r: int = Field(ge=1, le=5)
    f: int = Field(ge=1, le=5)
    m: int = Field(ge=1, le=5)
    segment: Segment


class CustomerSegments(BaseModel):
    as_of: date
    currency: str
    segments: list[SegmentFigures]
    customers: Page[CustomerRfm]
