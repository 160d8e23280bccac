"""Products, folders, stores and stock (SPEC §10). The rows are written by the sync engine; the API
reads them, and lets admins set a product's `min_stock`, the threshold of low-stock alerts."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any, TypedDict

from sqlalchemy.ext.asyncio import AsyncSession

from crm.activities.service import ActivityService
from crm.alerts.service import evaluate_low_stock
from crm.core.cache import invalidate_after_commit
from crm.core.redis import SafeRedis
from crm.core.schemas import from_row
from crm.inventory.exceptions import PriceRangeOutOfOrder, ProductNotFound
from crm.inventory.repository import (
    FolderRepository,
    ProductFilters,
    ProductRepository,
    StockFilters,
    StockRepository,
    StoreRepository,
)
from crm.inventory.schemas import FolderNode, ProductDetail, ProductRead, ProductUpdate, StockRead, StoreStock
from crm.models import Product, StockLevel, Store
from crm.organizations.dependencies import Tenant

ZERO = Decimal("0")


def _quantity(value: Decimal | None) -> str | None:
    return None if value is None else f"{value.normalize():f}"


class LevelFigures(TypedDict):
    stock: Decimal
    reserve: Decimal
    in_transit: Decimal
    available: Decimal


def level_figures(level: StockLevel) -> LevelFigures:
    """A stock level's quantities, with what is available of them (stock − reserve + in transit)."""
    available = level.stock - level.reserve + level.in_transit
    return {
        "stock": level.stock,
        "reserve": level.reserve,
        "in_transit": level.in_transit,
        "available": available,
    }


def build_tree(rows: Sequence[tuple[Any, int]]) -> list[FolderNode]:
    """Nest folders under their parents. A folder whose parent is unknown, or that sits on a cycle
    of parents sent by the provider, is shown as a root (every folder appears exactly once)."""
    nodes = {
        folder.id: from_row(FolderNode, folder, product_count=count, children=[]) for folder, count in rows
    }

    def reaches_root(node: FolderNode) -> bool:
        seen = {node.id}
        parent = node.parent_id
        while parent is not None and parent in nodes:
            if parent in seen:
                return False
            seen.add(parent)
            parent = nodes[parent].parent_id
        return True

    roots: list[FolderNode] = []
    for node in nodes.values():  # rows come ordered by name, so children are too
        parent = nodes.get(node.parent_id) if node.parent_id is not None else None
        if parent is not None and reaches_root(node):
            parent.children.append(node)
        else:
            roots.append(node)
    return roots


class InventoryService:
    def __init__(self, db: AsyncSession, tenant: Tenant, redis: SafeRedis) -> None:
        self.db = db
        self.tenant = tenant
        self.redis = redis
        self.organization_id = tenant.organization_id
        self.products = ProductRepository(db, tenant.organization_id)

    # Products -------------------------------------------------------------------------------------

    async def list_products(
        self, filters: ProductFilters, sort: str | None, limit: int, offset: int
    ) -> tuple[list[ProductRead], int]:
        if (
            filters.price_min is not None
            and filters.price_max is not None
            and filters.price_min > filters.price_max
        ):
            raise PriceRangeOutOfOrder()
        rows, total = await self.products.list(filters, sort, limit, offset)
        totals = await self.products.stock_totals([p.id for p in rows])
        items = []
        for p in rows:
            stock, reserve = totals.get(p.id, (ZERO, ZERO))
            items.append(from_row(ProductRead, p, stock=stock, reserve=reserve))
        return items, total

    async def get_product(self, product_id: int) -> ProductDetail:
        product = await self.products.get(product_id)
        if product is None:
            raise ProductNotFound()
        return await self._detail(product)

    async def _detail(self, product: Product) -> ProductDetail:
        stores = [
            StoreStock(store_id=level.store_id, store_name=store_name, **level_figures(level))
            for level, store_name in await self.products.stock_by_store(product.id)
        ]
        stock = sum((s.stock for s in stores), ZERO)
        reserve = sum((s.reserve for s in stores), ZERO)
        return from_row(ProductDetail, product, stock=stock, reserve=reserve, stores=stores)

    async def update_product(self, product_id: int, data: ProductUpdate) -> ProductDetail:
        """Set `min_stock`; low-stock alerts are re-evaluated at once and cached analytics dropped."""
        product = await self.products.get(product_id, for_update=True)
        if product is None:
            raise ProductNotFound()
        if "min_stock" in data.model_fields_set:
            product.min_stock_manual = True  # the provider's value no longer applies
        if "min_stock" in data.model_fields_set and product.min_stock != data.min_stock:
            changes = {"min_stock": [_quantity(product.min_stock), _quantity(data.min_stock)]}
            product.min_stock = data.min_stock
            ActivityService(self.db, self.organization_id, self.tenant.user_id).record(
                "product", product.id, "updated", changes
            )
            await self.db.flush()
            await evaluate_low_stock(self.db, self.organization_id)
            invalidate_after_commit(self.db, self.redis, self.organization_id)
        return await self._detail(product)

    # Folders, stores, stock -----------------------------------------------------------------------

    async def folder_tree(self, archived: bool | None) -> list[FolderNode]:
        rows = await FolderRepository(self.db, self.organization_id).all_with_counts(archived)
        return build_tree([(folder, count) for folder, count in rows])

    async def list_stores(
        self, archived: bool | None, sort: str | None, limit: int, offset: int
    ) -> tuple[Sequence[Store], int]:
        return await StoreRepository(self.db, self.organization_id).list(archived, sort, limit, offset)

    async def list_stock(
        self, filters: StockFilters, sort: str | None, limit: int, offset: int
    ) -> tuple[list[StockRead], int]:
        rows, total = await StockRepository(self.db, self.organization_id).list(filters, sort, limit, offset)
        items = [
            StockRead(
                id=level.id,
                product_id=level.product_id,
                product_name=product_name,
                product_code=product_code,
                store_id=level.store_id,
                store_name=store_name,
                **level_figures(level),
                min_stock=min_stock,
                updated_at=level.updated_at,
            )
            for level, product_name, product_code, min_stock, store_name in rows
        ]
        return items, total
