"""Sales documents (customer orders, shipments) and purchase documents (supplies, purchase orders)
as synced from MoySklad (SPEC §10). Money in roubles as 2-place strings, quantities as numbers."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from crm.core.schemas import ReadModel
from crm.core.validators import MoneyOut
from crm.inventory.schemas import Quantity

SalesKind = Literal["customer_order", "demand"]
PurchaseKind = Literal["supply", "purchase_order"]


class DocumentRead(ReadModel):
    id: int
    kind: str
    number: str | None
    moment: datetime = Field(description="When the document was issued (UTC)")
    counterparty_external_id: str | None
    company_id: int | None
    contact_id: int | None
    store_id: int | None
    total_amount: MoneyOut
    currency: str
    state: str | None
    applicable: bool = Field(description="Posted: only posted documents move stock and count as sales")
    description: str | None
    source: str
    external_id: str | None
    sync_warnings: list[str]
    created_at: datetime
    updated_at: datetime


class PositionRead(ReadModel):
    id: int
    product_id: int | None
    product_external_id: str | None
    product_name: str | None
    quantity: Quantity
    price: MoneyOut = Field(description="Per unit, before the discount")
    discount: Quantity = Field(description="Percent")
    vat: Quantity = Field(description="Percent")
    cost: MoneyOut | None = Field(description="Cost per unit when the provider reports it")
    total: MoneyOut = Field(description="quantity × price × (1 − discount / 100)")


class DocumentDetail(DocumentRead):
    positions: list[PositionRead]
