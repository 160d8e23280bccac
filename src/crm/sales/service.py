"""Sales and purchase documents (SPEC §10): read-only, written by the sync engine."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm.core.errors import NotFound
from crm.organizations.dependencies import Tenant
from crm.records.fields import check_range
from crm.sales.repository import (
    DocumentFilters,
    DocumentRepository,
    PurchaseDocumentRepository,
    SalesDocumentRepository,
)
from crm.sales.schemas import DocumentDetail, DocumentRead, PositionRead

HUNDRED = Decimal(100)


def line_total(quantity: Decimal, price: Decimal, discount: Decimal) -> Decimal:
    return quantity * price * (1 - discount / HUNDRED)


def period(date_from: date | None, date_to: date | None) -> tuple[datetime | None, datetime | None]:
    """Inclusive UTC dates → [start of date_from, start of the day after date_to); 422 when reversed."""
    check_range(date_from, date_to, ("date_from", "date_to"))
    start = datetime.combine(date_from, time.min, tzinfo=UTC) if date_from is not None else None
    end = None
    if date_to is not None and date_to < date.max:
        end = datetime.combine(date_to + timedelta(days=1), time.min, tzinfo=UTC)
    return start, end


class DocumentService:
    def __init__(self, db: AsyncSession, tenant: Tenant, *, purchases: bool = False) -> None:
        self.repo: DocumentRepository[Any] = (
            PurchaseDocumentRepository(db, tenant.organization_id)
            if purchases
            else SalesDocumentRepository(db, tenant.organization_id)
        )
        self.label = "Purchase document" if purchases else "Sales document"

    async def list(
        self, filters: DocumentFilters, sort: str | None, limit: int, offset: int
    ) -> tuple[Sequence[Any], int]:
        return await self.repo.list(filters, sort, limit, offset)

    async def get(self, document_id: int) -> DocumentDetail:
        document = await self.repo.get(document_id)
        if document is None:
            raise NotFound(f"{self.label} not found")
        positions = [
            PositionRead(
                id=p.id,
                product_id=p.product_id,
                product_external_id=p.product_external_id,
                product_name=name,
                quantity=p.quantity,
                price=p.price,
                discount=p.discount,
                vat=p.vat,
                cost=p.cost,
                total=line_total(p.quantity, p.price, p.discount),
            )
            for p, name in await self.repo.positions(document.id)
        ]
        read = DocumentRead.model_validate(document)
        return DocumentDetail.model_validate({**read.model_dump(), "positions": positions})
