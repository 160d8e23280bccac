"""Sales and inventory analytics in SQL, one statement per figure set, scoped to one organization.

What counts as a sale: posted (`applicable`) shipments (`demand`) in the organization's currency,
by their `moment`. Customer orders only reserve goods and are not counted. A position's revenue is
quantity × price × (1 − discount / 100); its cost is quantity × (the position's cost, else the
product's buy price, else 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Date,
    Integer,
    Row,
    String,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    literal_column,
    select,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncSession

from crm.inventory.repository import total_stock
from crm.models import (
    Company,
    Contact,
    Organization,
    Product,
    SalesDocument,
    SalesDocumentPosition,
    StockLevel,
    Store,
)

D = SalesDocument
P = SalesDocumentPosition
ITEMS_LIMIT = 100
TOP_PRODUCTS = 5
#: Recency (days since the last purchase) → R score: up to 30 days 5, 60 4, 90 3, 180 2, older 1.
RECENCY_DAYS = (30, 60, 90, 180)
#: Purchases → F score: 10+ 5, 5+ 4, 3+ 3, 2 2, 1 1.
FREQUENCY = (10, 5, 3, 2)


def revenue_line() -> Any:
    return P.quantity * P.price * (1 - P.discount / 100)


def cost_line() -> Any:
    return P.quantity * func.coalesce(P.cost, Product.buy_price, 0)


def customer_key() -> Any:
    return case(
        (D.company_id.is_not(None), literal("company:") + cast(D.company_id, String)),
        (D.contact_id.is_not(None), literal("contact:") + cast(D.contact_id, String)),
        (D.counterparty_external_id.is_not(None), literal("external:") + D.counterparty_external_id),
        else_=None,
    )


class SalesAnalyticsRepository:
    def __init__(self, session: AsyncSession, organization_id: int) -> None:
        self.session = session
        self.organization_id = organization_id

    def currency(self) -> Any:
        return select(Organization.currency).where(Organization.id == self.organization_id).scalar_subquery()

    def _shipments(self, start: datetime | None, end: datetime | None) -> list[Any]:
        clauses = [
            D.organization_id == self.organization_id,
            D.kind == "demand",
            D.applicable.is_(True),
            D.currency == self.currency(),
        ]
        if start is not None:
            clauses.append(D.moment >= start)
        if end is not None:
            clauses.append(D.moment < end)
        return clauses

    def _lines(self, *columns: Any, inner: bool = False) -> Any:
        """Shipments joined to their positions (documents without positions kept unless `inner`) and
        the positions' products."""
        org = self.organization_id
        on_position = and_(P.document_id == D.id, P.organization_id == org)
        stmt = select(*columns).select_from(D)
        stmt = stmt.join(P, on_position) if inner else stmt.outerjoin(P, on_position)
        return stmt.outerjoin(Product, and_(Product.id == P.product_id, Product.organization_id == org))

    async def org_currency(self) -> str:
        return str(await self.session.scalar(select(self.currency())))

    async def report(self, group_by: str, start: datetime, end: datetime) -> Sequence[Row[Any]]:
        """One row per group (`is_total` 0) and the totals row (`is_total` 1): revenue, cost, orders,
        quantity, with the group's `key` and `label`."""
        org = self.organization_id
        label: Any = literal(None, String)
        inner = False
        if group_by in ("day", "week", "month"):
            key: Any = cast(func.date_trunc(group_by, func.timezone("UTC", D.moment)), Date)
        elif group_by == "product":
            key, label, inner = cast(P.product_id, String), Product.name, True
        else:
            key, label = customer_key(), func.coalesce(Company.name, Contact.full_name)
        lines = self._lines(
            key.label("key"),
            label.label("label"),
            D.id.label("document_id"),
            revenue_line().label("revenue"),
            cost_line().label("cost"),
            P.quantity.label("quantity"),
            inner=inner,
        )
        if group_by == "customer":
            lines = lines.outerjoin(
                Company, and_(Company.id == D.company_id, Company.organization_id == org)
            ).outerjoin(Contact, and_(Contact.id == D.contact_id, Contact.organization_id == org))
        sub = lines.where(*self._shipments(start, end)).subquery("line")
        stmt = select(
            sub.c.key,
            func.max(sub.c.label).label("label"),
            func.grouping(sub.c.key).label("is_total"),
            func.coalesce(func.sum(sub.c.revenue), 0).label("revenue"),
            func.coalesce(func.sum(sub.c.cost), 0).label("cost"),
            func.count(sub.c.document_id.distinct()).label("orders"),
            func.coalesce(func.sum(sub.c.quantity), 0).label("quantity"),
        ).group_by(func.grouping_sets(tuple_(sub.c.key), tuple_()))
        return (await self.session.execute(stmt)).all()

    # Inventory -----------------------------------------------------------------------------------

    async def store_values(self) -> Sequence[Row[Any]]:
        """Stock value per store (`is_total` 0) and over all stores (`is_total` 1); negative stock
        counts as none; stock rows of products not synced yet are left out."""
        org = self.organization_id
        positive = func.greatest(StockLevel.stock, 0)
        sub = (
            select(
                StockLevel.store_id.label("store_id"),
                Store.name.label("store_name"),
                StockLevel.product_id.label("product_id"),
                positive.label("quantity"),
                (positive * func.coalesce(Product.buy_price, 0)).label("at_cost"),
                (positive * func.coalesce(Product.sale_price, 0)).label("at_sale"),
            )
            .join(Product, and_(Product.id == StockLevel.product_id, Product.organization_id == org))
            .outerjoin(Store, and_(Store.id == StockLevel.store_id, Store.organization_id == org))
            .where(StockLevel.organization_id == org)
            .subquery("stock")
        )
        stmt = (
            select(
                sub.c.store_id,
                func.max(sub.c.store_name).label("store_name"),
                func.grouping(sub.c.store_id).label("is_total"),
                func.count(sub.c.product_id.distinct()).filter(sub.c.quantity > 0).label("products"),
                func.coalesce(func.sum(sub.c.quantity), 0).label("quantity"),
                func.coalesce(func.sum(sub.c.at_cost), 0).label("at_cost"),
                func.coalesce(func.sum(sub.c.at_sale), 0).label("at_sale"),
            )
            .group_by(func.grouping_sets(tuple_(sub.c.store_id), tuple_()))
            .order_by(
                literal_column("is_total"), literal_column("store_name").asc().nulls_last(), sub.c.store_id
            )
        )
        return (await self.session.execute(stmt)).all()

    def _product_stock(self) -> Any:
        org = self.organization_id
        return (
            select(
                Product.id.label("product_id"),
                Product.name.label("name"),
                Product.code.label("code"),
                Product.min_stock.label("min_stock"),
                total_stock(org, Product.id).label("stock"),
            )
            .where(Product.organization_id == org, Product.kind == "product", Product.archived.is_(False))
            .subquery("product_stock")
        )

    async def stock_items(self, which: str, limit: int = ITEMS_LIMIT) -> tuple[int, Sequence[Row[Any]]]:
        """`low` (below min_stock) or `out` (zero or less) products: their count and the first ones."""
        ps = self._product_stock()
        if which == "low":
            condition = and_(ps.c.min_stock.is_not(None), ps.c.stock < ps.c.min_stock)
        else:
            condition = ps.c.stock <= 0
        stmt = (
            select(ps, func.count().over().label("n"))
            .where(condition)
            .order_by(ps.c.name, ps.c.product_id)
            .limit(limit)
        )
        rows = (await self.session.execute(stmt)).all()
        return (int(rows[0].n) if rows else 0), rows

    async def low_stock_count(self) -> int:
        ps = self._product_stock()
        stmt = (
            select(func.count())
            .select_from(ps)
            .where(ps.c.min_stock.is_not(None), ps.c.stock < ps.c.min_stock)
        )
        return int(await self.session.scalar(stmt) or 0)

    # Dashboard -----------------------------------------------------------------------------------

    async def sales_totals(self, start: datetime, end: datetime) -> Row[Any]:
        """Whether the organization has any sales document, and revenue and orders in the period."""
        has_data = exists().where(SalesDocument.organization_id == self.organization_id)
        sub = (
            self._lines(D.id.label("document_id"), revenue_line().label("revenue"))
            .where(*self._shipments(start, end))
            .subquery("line")
        )
        stmt = select(
            has_data.label("available"),
            func.coalesce(func.sum(sub.c.revenue), 0).label("revenue"),
            func.count(sub.c.document_id.distinct()).label("orders"),
        )
        row: Row[Any] = (await self.session.execute(stmt)).one()
        return row

    async def top_products(
        self, start: datetime, end: datetime, limit: int = TOP_PRODUCTS
    ) -> Sequence[Row[Any]]:
        revenue = func.sum(revenue_line())
        stmt = (
            self._lines(
                P.product_id,
                func.max(Product.name).label("name"),
                func.sum(P.quantity).label("quantity"),
                revenue.label("revenue"),
                inner=True,
            )
            .where(*self._shipments(start, end), P.product_id.is_not(None))
            .group_by(P.product_id)
            .order_by(revenue.desc(), P.product_id)
            .limit(limit)
        )
        return (await self.session.execute(stmt)).all()

    # Customers (RFM) -----------------------------------------------------------------------------

    def _segmented(self, as_of: date, end: datetime) -> Any:
        org = self.organization_id
        key = customer_key()
        lines = (
            self._lines(
                key.label("key"),
                D.company_id,
                D.contact_id,
                func.coalesce(Company.name, Contact.full_name).label("name"),
                D.id.label("document_id"),
                D.moment,
                revenue_line().label("revenue"),
            )
            .outerjoin(Company, and_(Company.id == D.company_id, Company.organization_id == org))
            .outerjoin(Contact, and_(Contact.id == D.contact_id, Contact.organization_id == org))
            .where(*self._shipments(None, end), key.is_not(None))
            .subquery("line")
        )
        customers = (
            select(
                lines.c.key,
                func.max(lines.c.company_id).label("company_id"),
                func.max(lines.c.contact_id).label("contact_id"),
                func.max(lines.c.name).label("name"),
                func.max(lines.c.moment).label("last_purchase_at"),
                func.count(lines.c.document_id.distinct()).label("frequency"),
                func.coalesce(func.sum(lines.c.revenue), 0).label("monetary"),
            )
            .group_by(lines.c.key)
            .subquery("customer")
        )
        recency = literal(as_of, Date) - cast(func.timezone("UTC", customers.c.last_purchase_at), Date)
        r = case(*((recency <= days, 5 - i) for i, days in enumerate(RECENCY_DAYS)), else_=1)
        f = case(*((customers.c.frequency >= n, 5 - i) for i, n in enumerate(FREQUENCY)), else_=1)
        m = cast(
            func.least(5, 1 + func.floor(func.percent_rank().over(order_by=customers.c.monetary) * 5)),
            Integer,
        )
        scored = select(
            customers,
            recency.label("recency_days"),
            r.label("r"),
            f.label("f"),
            m.label("m"),
        ).subquery("scored")
        segment = case(
            (and_(scored.c.r >= 4, scored.c.f >= 4), "champions"),
            (and_(scored.c.r >= 3, scored.c.f >= 3), "loyal"),
            (and_(scored.c.r >= 4, scored.c.f == 1), "new"),
            (scored.c.r >= 3, "promising"),
            (scored.c.f >= 3, "at_risk"),
            (scored.c.r == 2, "hibernating"),
            else_="lost",
        )
        return select(scored, segment.label("segment")).subquery("segmented")

    async def segments(self, as_of: date, end: datetime) -> Sequence[Row[Any]]:
        seg = self._segmented(as_of, end)
        stmt = select(
            seg.c.segment, func.count().label("customers"), func.sum(seg.c.monetary).label("revenue")
        ).group_by(seg.c.segment)
        return (await self.session.execute(stmt)).all()

    async def customers(
        self, as_of: date, end: datetime, segment: str | None, limit: int, offset: int
    ) -> tuple[int, Sequence[Row[Any]]]:
        seg = self._segmented(as_of, end)
        stmt = select(seg, func.count().over().label("total"))
        if segment is not None:
            stmt = stmt.where(seg.c.segment == segment)
        stmt = stmt.order_by(seg.c.monetary.desc(), seg.c.key).limit(limit).offset(offset)
        rows = (await self.session.execute(stmt)).all()
        if rows:
            return int(rows[0].total), rows
        if offset == 0:
            return 0, rows
        count = select(func.count()).select_from(seg)
        if segment is not None:
            count = count.where(seg.c.segment == segment)
        return int(await self.session.scalar(count) or 0), rows
