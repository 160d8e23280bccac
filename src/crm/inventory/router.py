"""`/products` and `/inventory` (SPEC §10): read access with `inventory:read`; setting a product's
`min_stock` (the low-stock alert threshold) with `alerts:manage`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Query

from crm.core.openapi import errors
from crm.core.schemas import Id, Page, Paging, sort_param
from crm.core.validators import MoneyIn
from crm.inventory.repository import ProductFilters, StockFilters
from crm.inventory.schemas import (
    FolderNode,
    ProductDetail,
    ProductKind,
    ProductRead,
    ProductUpdate,
    StockRead,
    StoreRead,
)
from crm.inventory.service import InventoryService
from crm.organizations.dependencies import require, tenant_service
from crm.records.router import OptionalId

products_router = APIRouter(prefix="/products", tags=["inventory"])
inventory_router = APIRouter(prefix="/inventory", tags=["inventory"])

#: The inventory service for a caller holding the permission (403 otherwise).
ReadService = Annotated[
    InventoryService, Depends(tenant_service(InventoryService, require("inventory:read")))
]
ManageService = Annotated[
    InventoryService, Depends(tenant_service(InventoryService, require("alerts:manage")))
]
if TYPE_CHECKING:
    ProductSort = str | None
    StockSort = str | None
    StoreSort = str | None
else:
    ProductSort = sort_param("created_at", "updated_at", "name", "code", "sale_price", "buy_price")
    StockSort = sort_param("created_at", "updated_at", "stock", "product_name", "store_name")
    StoreSort = sort_param("created_at", "updated_at", "name")


# The literal `/folders` is registered before `/{product_id}` so that it wins.
@products_router.get("/folders", response_model=Page[FolderNode], responses=errors(400, 401, 403, 422))
async def folder_tree(
    service: ReadService,
    paging: Paging,
    archived: Annotated[
        bool | None, Query(description="Only archived (true) or active (false) folders")
    ] = None,
) -> object:
    """The product folder tree: root folders (paged, by name), each with its `children` nested."""
    roots = await service.folder_tree(archived)
    return paging.page(roots[paging.offset : paging.offset + paging.limit], len(roots))


@products_router.get("", response_model=Page[ProductRead], responses=errors(400, 401, 403, 422))
async def list_products(
    service: ReadService,
    paging: Paging,
    q: Annotated[
        str | None, Query(max_length=200, description="Name, code or article; full text and typo-tolerant")
    ] = None,
    folder_id: OptionalId = None,
    include_subfolders: Annotated[
        bool, Query(description="With `folder_id`: also products of its subfolders")
    ] = True,
    kind: ProductKind | None = None,
    archived: bool | None = None,
    price_min: Annotated[MoneyIn | None, Query(description="Sale price at least")] = None,
    price_max: Annotated[MoneyIn | None, Query(description="Sale price at most")] = None,
    in_stock: Annotated[
        bool | None, Query(description="Total stock above zero (true) or not (false)")
    ] = None,
    sort: ProductSort = None,
) -> object:
    """Products and services with their total stock and reserve, newest first."""
    filters = ProductFilters(
        q=q or None,
        folder_id=folder_id,
        include_subfolders=include_subfolders,
        kind=kind,
        archived=archived,
        price_min=price_min,
        price_max=price_max,
        in_stock=in_stock,
    )
    items, total = await service.list_products(filters, sort, paging.limit, paging.offset)
    return paging.page(items, total)


@products_router.get("/{product_id}", response_model=ProductDetail, responses=errors(400, 401, 403, 404, 422))
async def get_product(product_id: Id, service: ReadService) -> object:
    """One product with its stock per store."""
    return await service.get_product(product_id)


@products_router.patch(
    "/{product_id}", response_model=ProductDetail, responses=errors(400, 401, 403, 404, 422)
)
async def update_product(product_id: Id, data: ProductUpdate, service: ManageService) -> object:
    """Set `min_stock` (admins). Low-stock alerts are re-evaluated at once: a product now below its
    minimum raises one, one back above it resolves its open one."""
    return await service.update_product(product_id, data)


@inventory_router.get("/stores", response_model=Page[StoreRead], responses=errors(400, 401, 403, 422))
async def list_stores(
    service: ReadService,
    paging: Paging,
    archived: bool | None = None,
    sort: StoreSort = None,
) -> object:
    """Stores (warehouses), newest first."""
    rows, total = await service.list_stores(archived, sort, paging.limit, paging.offset)
    return paging.page(rows, total)


@inventory_router.get("/stock", response_model=Page[StockRead], responses=errors(400, 401, 403, 422))
async def list_stock(
    service: ReadService,
    paging: Paging,
    store_id: OptionalId = None,
    product_id: OptionalId = None,
    low_only: Annotated[
        bool, Query(description="Only rows of products whose total stock is below their min_stock")
    ] = False,
    sort: StockSort = None,
) -> object:
    """Stock levels per product and store, newest first."""
    filters = StockFilters(store_id=store_id, product_id=product_id, low_only=low_only)
    items, total = await service.list_stock(filters, sort, paging.limit, paging.offset)
    return paging.page(items, total)
