"""`/sales/documents` (`sales:read`) and `/purchases/documents` (`inventory:read`), SPEC §10.

Both lists take the same filters (`DocumentQuery`) besides their own `kind`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Query

from crm.core.db import SessionDep
from crm.core.openapi import errors
from crm.core.schemas import Id, IsoDate, Page, PageParams, Paging, sort_param
from crm.organizations.dependencies import Tenant, require
from crm.records.router import OptionalId
from crm.sales.repository import DocumentFilters
from crm.sales.schemas import DocumentDetail, DocumentRead, PurchaseKind, SalesKind
from crm.sales.service import DocumentService, period

router = APIRouter(prefix="/sales/documents", tags=["sales"])
purchases_router = APIRouter(prefix="/purchases/documents", tags=["sales"])

DateFrom = Annotated[IsoDate | None, Query(description="Issued on or after this UTC date")]
DateTo = Annotated[IsoDate | None, Query(description="Issued on or before this UTC date")]
Posted = Annotated[bool | None, Query(description="Only posted (true) or unposted (false) documents")]
if TYPE_CHECKING:
    DocumentSort = str | None
else:
    DocumentSort = sort_param("created_at", "moment", "total_amount", "number")


@dataclass(frozen=True, slots=True)
class DocumentQuery:
    """The filters and sort of a document list, but its `kind`."""

    date_from: IsoDate | None
    date_to: IsoDate | None
    company_id: int | None
    contact_id: int | None
    store_id: int | None
    applicable: bool | None
    sort: str | None

    async def page(self, service: DocumentService, kind: str | None, paging: PageParams) -> Page[object]:
        start, end = period(self.date_from, self.date_to)
        filters = DocumentFilters(
            kind, start, end, self.company_id, self.contact_id, self.store_id, self.applicable
        )
        return paging.page(*await service.list(filters, self.sort, paging.limit, paging.offset))


async def document_query(
    date_from: DateFrom = None,
    date_to: DateTo = None,
    company_id: OptionalId = None,
    contact_id: OptionalId = None,
    store_id: OptionalId = None,
    applicable: Posted = None,
    sort: DocumentSort = None,
) -> DocumentQuery:
    return DocumentQuery(date_from, date_to, company_id, contact_id, store_id, applicable, sort)


async def sales_documents(
    db: SessionDep, tenant: Annotated[Tenant, Depends(require("sales:read"))]
) -> DocumentService:
    return DocumentService(db, tenant)


async def purchase_documents(
    db: SessionDep, tenant: Annotated[Tenant, Depends(require("inventory:read"))]
) -> DocumentService:
    return DocumentService(db, tenant, purchases=True)


Documents = Annotated[DocumentQuery, Depends(document_query)]
SalesDocuments = Annotated[DocumentService, Depends(sales_documents)]
PurchaseDocuments = Annotated[DocumentService, Depends(purchase_documents)]
SalesKindQuery = Annotated[SalesKind | None, Query(description="customer_order or demand (shipment)")]
PurchaseKindQuery = Annotated[PurchaseKind | None, Query(description="supply or purchase_order")]


@router.get("", response_model=Page[DocumentRead], responses=errors(400, 401, 403, 422))
async def list_sales_documents(
    service: SalesDocuments, query: Documents, paging: Paging, kind: SalesKindQuery = None
) -> object:
    """Customer orders and shipments, newest first."""
    return await query.page(service, kind, paging)


@router.get("/{document_id}", response_model=DocumentDetail, responses=errors(400, 401, 403, 404, 422))
async def get_sales_document(document_id: Id, service: SalesDocuments) -> object:
    """One sales document with its positions."""
    return await service.get(document_id)


@purchases_router.get("", response_model=Page[DocumentRead], responses=errors(400, 401, 403, 422))
async def list_purchase_documents(
    service: PurchaseDocuments, query: Documents, paging: Paging, kind: PurchaseKindQuery = None
) -> object:
    """Supplies and purchase orders, newest first."""
    return await query.page(service, kind, paging)


@purchases_router.get(
    "/{document_id}", response_model=DocumentDetail, responses=errors(400, 401, 403, 404, 422)
)
async def get_purchase_document(document_id: Id, service: PurchaseDocuments) -> object:
    """One purchase document with its positions."""
    return await service.get(document_id)
