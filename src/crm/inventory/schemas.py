"""Products, folders, stores and stock as synced from MoySklad (SPEC §10). Money is a 2-place string,
quantities (stock, reserve, minimum) are JSON numbers in the product's unit."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, Field, PlainSerializer, WithJsonSchema

from crm.core.schemas import InputModel, ReadModel
from crm.core.validators import MoneyOut

#: A stock figure: stored exactly (3 places), sent as a JSON number.
Quantity = Annotated[
    Decimal,
    PlainSerializer(float, return_type=float, when_used="json"),
    WithJsonSchema({"type": "number"}),
]
ProductKind = Literal["product", "service"]


class ProductRead(ReadModel):
    id: int
    kind: str
    name: str
    code: str | None
    article: str | None
    description: str | None
    uom: str | None
    folder_id: int | None
    sale_price: MoneyOut | None = Field(description="The first sale price")
    buy_price: MoneyOut | None
    currency: str
    min_stock: Quantity | None = Field(description="Below this total stock a low-stock alert is raised")
    archived: bool
    stock: Quantity = Field(description="Stock over all stores")
    reserve: Quantity = Field(description="Reserved over all stores")
    source: str
    external_id: str | None
    sync_warnings: list[str]
    created_at: datetime
    updated_at: datetime


class StoreStock(BaseModel):
    store_id: int | None
    store_name: str | None
    stock: Quantity
    reserve: Quantity
    in_transit: Quantity
    available: Quantity = Field(description="stock − reserve + in transit")


class ProductDetail(ProductRead):
    stores: list[StoreStock] = Field(description="Stock per store")


class ProductUpdate(InputModel):
    min_stock: Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=3)] | None = Field(
        default=None, description="Minimum total stock; null switches the low-stock alert off"
    )


class FolderNode(BaseModel):
    id: int
    name: str
    path_name: str | None
    parent_id: int | None
    archived: bool
    external_id: str | None
    product_count: int = Field(description="Products directly in this folder")
    children: list[FolderNode]


class StoreRead(ReadModel):
    id: int
    name: str
    address: str | None
    archived: bool
    source: str
    external_id: str | None
    created_at: datetime
    updated_at: datetime


class _StockOf(BaseModel):
    id: int
    product_id: int | None
    product_name: str | None
    product_code: str | None


# The product's fields first, then the store's figures (the order the fields had when spelled out).
class StockRead(StoreStock, _StockOf):
    min_stock: Quantity | None = Field(description="The product's minimum total stock")
    updated_at: datetime
