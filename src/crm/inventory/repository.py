"""Inventory queries. Every statement is scoped to one organization."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, and_, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.core.repository import TenantRepository, order_by_sort
from crm.models import Product, ProductFolder, StockLevel, Store
from crm.records.repository import like_pattern
from crm.search.repository import prefix_tsquery

PRODUCT_SORTS = {
    "created_at": Product.created_at,
    "updated_at": Product.updated_at,
    "name": Product.name,
    "code": Product.code,
    "sale_price": Product.sale_price,
    "buy_price": Product.buy_price,
}
STOCK_SORTS = {
    "created_at": StockLevel.created_at,
    "updated_at": StockLevel.updated_at,
    "stock": StockLevel.stock,
    "product_name": Product.name,
    "store_name": Store.name,
}
STORE_SORTS = {"created_at": Store.created_at, "updated_at": Store.updated_at, "name": Store.name}


@dataclass(frozen=True)
class ProductFilters:
    q: str | None = None
    folder_id: int | None = None
    include_subfolders: bool = True
    kind: str | None = None
    archived: bool | None = None
    price_min: Decimal | None = None
    price_max: Decimal | None = None
    in_stock: bool | None = None


@dataclass(frozen=True)
class StockFilters:
    store_id: int | None = None
    product_id: int | None = None
    low_only: bool = False


def total_stock(organization_id: int, product_id: Any) -> Any:
    """The product's stock over all stores (0 without stock rows), as a scalar subquery."""
    return func.coalesce(
        select(func.sum(StockLevel.stock))
        .where(StockLevel.organization_id == organization_id, StockLevel.product_id == product_id)
        .scalar_subquery(),
        0,
    )


def low_stock_products(organization_id: int) -> Select[tuple[int]]:
    """Ids of the live stocked products whose total stock is below their `min_stock`."""
    return select(Product.id).where(
        Product.organization_id == organization_id,
        Product.min_stock.is_not(None),
        Product.kind == "product",
        Product.archived.is_(False),
        total_stock(organization_id, Product.id) < Product.min_stock,
    )


class ProductRepository(TenantRepository[Product]):
    model = Product

    def _folder_ids(self, folder_id: int, recursive: bool) -> Any:
        if not recursive:
            return select(literal(folder_id))
        org = ProductFolder.organization_id == self.organization_id
        tree = (
            select(ProductFolder.id)
            .where(org, ProductFolder.id == folder_id)
            .cte("folder_tree", recursive=True)
        )
        # UNION (not UNION ALL) ends the walk even if the provider sent a cycle of parents.
        tree = tree.union(select(ProductFolder.id).where(org, ProductFolder.parent_id == tree.c.id))
        return select(tree.c.id)

    def filtered(self, f: ProductFilters) -> Select[tuple[Product]]:
        stmt = self.base()
        if f.q:
            pattern = like_pattern(f.q)
            matches: list[ColumnElement[bool]] = [
                Product.search_vector.op("@@")(prefix_tsquery(f.q)),
                Product.name.ilike(pattern),
                Product.code.ilike(pattern),
                Product.article.ilike(pattern),
                literal(f.q).op("<%")(Product.name),
            ]
            stmt = stmt.where(or_(*matches))
        if f.folder_id is not None:
            stmt = stmt.where(Product.folder_id.in_(self._folder_ids(f.folder_id, f.include_subfolders)))
        if f.kind is not None:
            stmt = stmt.where(Product.kind == f.kind)
        if f.archived is not None:
            stmt = stmt.where(Product.archived.is_(f.archived))
        if f.price_min is not None:
            stmt = stmt.where(Product.sale_price >= f.price_min)
        if f.price_max is not None:
            stmt = stmt.where(Product.sale_price <= f.price_max)
        if f.in_stock is not None:
            stock = total_stock(self.organization_id, Product.id)
            stmt = stmt.where(stock > 0 if f.in_stock else stock <= 0)
        return stmt

    async def list(
        self, f: ProductFilters, sort: str | None, limit: int, offset: int
    ) -> tuple[Sequence[Product], int]:
        return await self.page(
            self.filtered(f), order_by_sort(sort, PRODUCT_SORTS, Product.id), limit, offset
        )

    async def stock_totals(self, product_ids: Sequence[int]) -> dict[int, tuple[Decimal, Decimal]]:
        """Total stock and reserve over all stores per product."""
        if not product_ids:
            return {}
        stmt = (
            select(StockLevel.product_id, func.sum(StockLevel.stock), func.sum(StockLevel.reserve))
            .where(StockLevel.organization_id == self.organization_id, StockLevel.product_id.in_(product_ids))
            .group_by(StockLevel.product_id)
        )
        return {pid: (Decimal(s), Decimal(r)) for pid, s, r in (await self.session.execute(stmt)).all()}

    async def stock_by_store(self, product_id: int) -> Sequence[Row[Any]]:
        stmt = (
            select(StockLevel, Store.name.label("store_name"))
            .outerjoin(
                Store, and_(Store.id == StockLevel.store_id, Store.organization_id == self.organization_id)
            )
            .where(StockLevel.organization_id == self.organization_id, StockLevel.product_id == product_id)
            .order_by(Store.name.asc().nulls_last(), StockLevel.id)
        )
        return (await self.session.execute(stmt)).all()


class FolderRepository(TenantRepository[ProductFolder]):
    model = ProductFolder

    async def all_with_counts(self, archived: bool | None) -> Sequence[Row[Any]]:
        """Every folder of the organization with the number of products directly in it."""
        counts = (
            select(Product.folder_id, func.count().label("n"))
            .where(Product.organization_id == self.organization_id, Product.folder_id.is_not(None))
            .group_by(Product.folder_id)
            .subquery("folder_products")
        )
        stmt = (
            select(ProductFolder, func.coalesce(counts.c.n, 0).label("product_count"))
            .outerjoin(counts, counts.c.folder_id == ProductFolder.id)
            .where(ProductFolder.organization_id == self.organization_id)
            .order_by(ProductFolder.name, ProductFolder.id)
        )
        if archived is not None:
            stmt = stmt.where(ProductFolder.archived.is_(archived))
        rows: Sequence[Row[Any]] = (await self.session.execute(stmt)).all()
        return rows


class StoreRepository(TenantRepository[Store]):
    model = Store

    async def list(
        self, archived: bool | None, sort: str | None, limit: int, offset: int
    ) -> tuple[Sequence[Store], int]:
        stmt = self.base()
        if archived is not None:
            stmt = stmt.where(Store.archived.is_(archived))
        return await self.page(stmt, order_by_sort(sort, STORE_SORTS, Store.id), limit, offset)


class StockRepository:
    def __init__(self, session: AsyncSession, organization_id: int) -> None:
        self.session = session
        self.organization_id = organization_id

    async def list(
        self, f: StockFilters, sort: str | None, limit: int, offset: int
    ) -> tuple[Sequence[Row[Any]], int]:
        org = self.organization_id
        where: list[ColumnElement[bool]] = [StockLevel.organization_id == org]
        if f.store_id is not None:
            where.append(StockLevel.store_id == f.store_id)
        if f.product_id is not None:
            where.append(StockLevel.product_id == f.product_id)
        if f.low_only:
            where.append(StockLevel.product_id.in_(low_stock_products(org)))
        stmt = (
            select(
                StockLevel,
                Product.name.label("product_name"),
                Product.code.label("product_code"),
                Product.min_stock.label("min_stock"),
                Store.name.label("store_name"),
            )
            .outerjoin(Product, and_(Product.id == StockLevel.product_id, Product.organization_id == org))
            .outerjoin(Store, and_(Store.id == StockLevel.store_id, Store.organization_id == org))
            .where(*where)
        )
        total = int(
            await self.session.scalar(select(func.count()).select_from(StockLevel).where(*where)) or 0
        )
        order = order_by_sort(sort, STOCK_SORTS, StockLevel.id)
        rows = (await self.session.execute(stmt.order_by(*order).limit(limit).offset(offset))).all()
        return rows, total
