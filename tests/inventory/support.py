"""Synced inventory and sales rows written straight to the tables, as the sync engine stores them."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import (
    Product,
    ProductFolder,
    PurchaseDocument,
    PurchaseDocumentPosition,
    SalesDocument,
    SalesDocumentPosition,
    StockLevel,
    Store,
)

_seq = itertools.count(1)


def ext() -> str:
    return f"ms-{next(_seq):06d}"


async def make_folder(
    db: AsyncSession, org_id: int, name: str, parent: ProductFolder | None = None, **values: Any
) -> ProductFolder:
    folder = ProductFolder(
        organization_id=org_id,
        name=name,
        parent_id=parent.id if parent else None,
        source="moysklad",
        external_id=ext(),
        **values,
    )
    db.add(folder)
    await db.flush()
    return folder


async def make_product(db: AsyncSession, org_id: int, name: str, **values: Any) -> Product:
    for field in ("sale_price", "buy_price", "min_stock"):
        if values.get(field) is not None:
            values[field] = Decimal(str(values[field]))
    product = Product(organization_id=org_id, name=name, source="moysklad", external_id=ext(), **values)
    db.add(product)
    await db.flush()
    return product


async def make_store(db: AsyncSession, org_id: int, name: str, **values: Any) -> Store:
    store = Store(organization_id=org_id, name=name, source="moysklad", external_id=ext(), **values)
    db.add(store)
    await db.flush()
    return store


async def set_stock(
    db: AsyncSession,
    product: Product,
    store: Store,
    stock: str | int,
    reserve: str | int = 0,
    in_transit: str | int = 0,
) -> StockLevel:
    level = StockLevel(
        organization_id=product.organization_id,
        source="moysklad",
        product_external_id=product.external_id,
        store_external_id=store.external_id,
        product_id=product.id,
        store_id=store.id,
        stock=Decimal(str(stock)),
        reserve=Decimal(str(reserve)),
        in_transit=Decimal(str(in_transit)),
    )
    db.add(level)
    await db.flush()
    return level


#: (product, quantity, price[, discount[, cost]])
Line = tuple[Any, ...]


async def make_document(
    db: AsyncSession,
    org_id: int,
    kind: str,
    moment: datetime,
    lines: Sequence[Line] = (),
    *,
    purchase: bool = False,
    **values: Any,
) -> Any:
    doc_model: Any = PurchaseDocument if purchase else SalesDocument
    pos_model: Any = PurchaseDocumentPosition if purchase else SalesDocumentPosition
    total = Decimal(0)
    for line in lines:
        _, qty, price, *rest = line
        discount = Decimal(str(rest[0])) if rest else Decimal(0)
        total += Decimal(str(qty)) * Decimal(str(price)) * (1 - discount / 100)
    values.setdefault("total_amount", total.quantize(Decimal("0.01")))
    document = doc_model(
        organization_id=org_id, kind=kind, moment=moment, source="moysklad", external_id=ext(), **values
    )
    db.add(document)
    await db.flush()
    db.add_all(
        [
            pos_model(
                organization_id=org_id,
                document_id=document.id,
                product_id=product.id if product is not None else None,
                product_external_id=product.external_id if product is not None else None,
                quantity=Decimal(str(qty)),
                price=Decimal(str(price)),
                discount=Decimal(str(rest[0])) if rest else Decimal(0),
                cost=Decimal(str(rest[1])) if len(rest) > 1 and rest[1] is not None else None,
            )
            for product, qty, price, *rest in lines
        ]
    )
    await db.flush()
    return document
