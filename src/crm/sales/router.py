"""`/sales/documents` (`sales:read`) and `/purchases/documents` (`inventory:read`), SPEC §10."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Query

from crm.core.db import SessionDep
from crm.core.openapi import errors
from crm.core.schemas import Id, IsoDate, Page, PageParams, page_params, sort_param
from crm.organizations.dependencies import Tenant, require
from crm.records.router import OptionalId
from crm.sales.repository import DocumentFilters
from crm.sales.schemas import DocumentDetail, DocumentRead, PurchaseKind, SalesKind
from crm.sales.service import DocumentService, period

router = APIRouter(prefix="/sales/documents", tags=["sales"])
purchases_router = APIRouter(prefix="/purchases/documents", tags=["sales"])

SalesReader = Annotated[Tenant, Depends(require("sales:read"))]
PurchaseReader = Annotated[Tenant, Depends(require("inventory:read"))]
Paging = Annotated[PageParams, Depends(page_params)]
DateFrom = Annotated[IsoDate | None, Query(description="Issued on or after this UTC date")]
DateTo = Annotated[IsoDate | None, Query(description="Issued on or before this UTC date")]
Posted = Annotated[bool | None, Query(description="Only posted (true) or unposted (false) documents")]
if TYPE_CHECKING:
    DocumentSort = str | None
else:
    DocumentSort = sort_param("created_at", "moment", "total_amount", "number")


@router.get("", response_model=Page[DocumentRead], responses=errors(400, 401, 403, 422))
async def list_sales_documents(
    tenant: SalesReader,
    db: SessionDep,
    paging: Paging,
    kind: Annotated[SalesKind | None, Query(description="customer_order or demand (shipment)")] = None,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    company_id: OptionalId = None,
    contact_id: OptionalId = None,
    store_id: OptionalId = None,
    applicable: Posted = None,
    sort: DocumentSort = None,
) -> object:
    """Customer orders and shipments, newest first."""
    start, end = period(date_from, date_to)
    filters = DocumentFilters(kind, start, end, company_id, contact_id, store_id, applicable)
    rows, total = await DocumentService(db, tenant).list(filters, sort, paging.limit, paging.offset)
    return Page(items=rows, total=total, limit=paging.limit, offset=paging.offset)


@router.get("/{document_id}", response_model=DocumentDetail, responses=errors(400, 401, 403, 404, 422))
async def get_sales_document(document_id: Id, tenant: SalesReader, db: SessionDep) -> object:
    """One sales document with its positions."""
    return await DocumentService(db, tenant).get(document_id)


@purchases_router.get("", response_model=Page[DocumentRead], responses=errors(400, 401, 403, 422))
async def list_purchase_documents(
    tenant: PurchaseReader,
    db: SessionDep,
    paging: Paging,
    kind: Annotated[PurchaseKind | None, Query(description="supply or purchase_order")] = None,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    company_id: OptionalId = None,
    contact_id: OptionalId = None,
    store_id: OptionalId = None,
    applicable: Posted = None,
    sort: DocumentSort = None,
) -> object:
    """Supplies and purchase orders, newest first."""
    start, end = period(date_from, date_to)
    filters = DocumentFilters(kind, start, end, company_id, contact_id, store_id, applicable)
    service = DocumentService(db, tenant, purchases=True)
    rows, total = await service.list(filters, sort, paging.limit, paging.offset)
    return Page(items=rows, total=total, limit=paging.limit, offset=paging.offset)


@purchases_router.get(
    "/{document_id}", response_model=DocumentDetail, responses=errors(400, 401, 403, 404, 422)
)
async def get_purchase_document(document_id: Id, tenant: PurchaseReader, db: SessionDep) -> object:
    """One purchase document with its positions."""
    return await DocumentService(db, tenant, purchases=True).get(document_id)
