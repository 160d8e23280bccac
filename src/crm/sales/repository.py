"""Queries over sales and purchase documents (one generic repository for both). Every statement is
scoped to one organization."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Row, and_, select

from crm.core.repository import TenantRepository, order_by_sort, where_equal
from crm.models import (
    Product,
    PurchaseDocument,
    PurchaseDocumentPosition,
    SalesDocument,
    SalesDocumentPosition,
)

D = TypeVar("D", SalesDocument, PurchaseDocument)


@dataclass(frozen=True)
class DocumentFilters:
    kind: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    company_id: int | None = None
    contact_id: int | None = None
    store_id: int | None = None
    applicable: bool | None = None


class DocumentRepository(TenantRepository[D], Generic[D]):
    position_model: Any

    def sorts(self) -> dict[str, Any]:
        m: Any = self.model
        return {
            "created_at": m.created_at,
            "moment": m.moment,
            "total_amount": m.total_amount,
            "number": m.number,
        }

    async def list(
        self, f: DocumentFilters, sort: str | None, limit: int, offset: int
    ) -> tuple[Sequence[D], int]:
        m: Any = self.model
        stmt = where_equal(self.base(), m, f, "kind", "company_id", "contact_id", "store_id")
        if f.start is not None:
            stmt = stmt.where(m.moment >= f.start)
        if f.end is not None:
            stmt = stmt.where(m.moment < f.end)
        if f.applicable is not None:
            stmt = stmt.where(m.applicable.is_(f.applicable))
        return await self.page(stmt, order_by_sort(sort, self.sorts(), m.id), limit, offset)

    async def positions(self, document_id: int) -> Sequence[Row[Any]]:
        p = self.position_model
        stmt = (
            select(p, Product.name.label("product_name"))
            .outerjoin(
                Product, and_(Product.id == p.product_id, Product.organization_id == self.organization_id)
            )
            .where(p.organization_id == self.organization_id, p.document_id == document_id)
            .order_by(p.id)
        )
        return (await self.session.execute(stmt)).all()


class SalesDocumentRepository(DocumentRepository[SalesDocument]):
    model = SalesDocument
    position_model = SalesDocumentPosition


class PurchaseDocumentRepository(DocumentRepository[PurchaseDocument]):
    model = PurchaseDocument
    position_model = PurchaseDocumentPosition
