"""Sales, inventory and customer analytics (SPEC §7) from synced MoySklad data, cached per
organization like the CRM analytics (the sync engine bumps the organization's cache generation when a
job finishes; setting a product's `min_stock` bumps it too).

Customer segments (RFM) use fixed scores for recency and frequency (see `sales_repository`) and the
percent rank of the revenue among the organization's customers for M; the segment follows R and F.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from crm.analytics.exceptions import PeriodOutOfOrder
from crm.analytics.sales_repository import SalesAnalyticsRepository
from crm.analytics.sales_schemas import (
    SEGMENTS,
    CustomerRfm,
    CustomerSegments,
    InventoryReport,
    InventoryTotals,
    SalesFigures,
    SalesReport,
    SalesReportRow,
    SegmentFigures,
    StockItem,
    StockItems,
    StoreValue,
)
from crm.analytics.schemas import ZERO, SalesMetrics, TopProduct
from crm.core.cache import OrgCache
from crm.core.redis import SafeRedis
from crm.core.schemas import Page
from crm.organizations.dependencies import Tenant

CENT = Decimal("0.01")
MARGIN_PLACES = Decimal("0.0001")


def money(value: Any) -> Decimal:
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def period_bounds(date_from: date, date_to: date) -> tuple[datetime, datetime]:
    """Inclusive UTC dates → [start of date_from, start of the day after date_to)."""
    end = day_start(date_to + timedelta(days=1)) if date_to < date.max else datetime.max.replace(tzinfo=UTC)
    return day_start(date_from), end


def default_period(date_from: date | None, date_to: date | None) -> tuple[date, date]:
    """The given dates, this month's first and last day (UTC) for those omitted; 422 when reversed."""
    first = datetime.now(UTC).date().replace(day=1)
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    period = (date_from or first, date_to or last)
    if period[0] > period[1]:
        raise PeriodOutOfOrder()
    return period


def figures(revenue: Any, cost: Any, orders: int, quantity: Any) -> dict[str, Any]:
    revenue, cost = money(revenue), money(cost)
    profit = revenue - cost
    margin = float((profit / revenue).quantize(MARGIN_PLACES)) if revenue else None
    return {
        "revenue": revenue,
        "cost": cost,
        "profit": profit,
        "margin": margin,
        "orders": int(orders),
        "quantity": float(quantity),
    }


def _label(group_by: str, key: Any) -> str | None:
    if key is None:
        return None
    if group_by == "week":
        year, week, _ = key.isocalendar()
        return f"{year}-W{week:02d}"
    if group_by == "month":
        return f"{key:%Y-%m}"
    return str(key.isoformat())


async def sales_metrics(
    db: AsyncSession, organization_id: int, date_from: date, date_to: date, currency: str
) -> SalesMetrics:
    """The sales half of the dashboard: revenue, orders (posted shipments), average check and top
    products in the period, and the products below their minimum stock now."""
    repo = SalesAnalyticsRepository(db, organization_id)
    start, end = period_bounds(date_from, date_to)
    totals = await repo.sales_totals(start, end)
    revenue = money(totals.revenue)
    top = await repo.top_products(start, end) if totals.orders else []
    return SalesMetrics(
        available=bool(totals.available),
        date_from=date_from,
        date_to=date_to,
        revenue=revenue,
        orders=totals.orders,
        average_check=money(revenue / totals.orders) if totals.orders else ZERO,
        top_products=[
            TopProduct(
                product_id=row.product_id,
                name=row.name,
                quantity=float(row.quantity),
                revenue=money(row.revenue),
            )
            for row in top
        ],
        low_stock_count=await repo.low_stock_count(),
        currency=currency,
    )


class SalesAnalyticsService:
    def __init__(self, db: AsyncSession, tenant: Tenant, redis: SafeRedis, ttl_seconds: int) -> None:
        self.organization_id = tenant.organization_id
        self.repo = SalesAnalyticsRepository(db, tenant.organization_id)
        self.cache = OrgCache(redis, ttl_seconds)

    async def _cached(
        self, name: str, params: dict[str, Any], compute: Callable[[], Awaitable[BaseModel]]
    ) -> tuple[bytes, bool]:
        async def value() -> dict[str, Any]:
            result: dict[str, Any] = (await compute()).model_dump(mode="json")
            return result

        return await self.cache.get_or_compute(self.organization_id, name, params, value)

    # Sales report ---------------------------------------------------------------------------------

    async def sales_report(
        self, group_by: str, date_from: date | None, date_to: date | None
    ) -> tuple[bytes, bool]:
        period = default_period(date_from, date_to)
        params = {"group_by": group_by, "date_from": period[0], "date_to": period[1]}
        return await self._cached(
            "sales.report", params, lambda: self.compute_sales_report(group_by, *period)
        )

    async def compute_sales_report(self, group_by: str, date_from: date, date_to: date) -> SalesReport:
        rows = await self.repo.report(group_by, *period_bounds(date_from, date_to))
        totals = SalesFigures(**figures(0, 0, 0, 0))
        out: list[SalesReportRow] = []
        for row in rows:
            values = figures(row.revenue, row.cost, row.orders, row.quantity)
            if row.is_total:
                totals = SalesFigures(**values)
                continue
            if group_by in ("day", "week", "month"):
                key, label = row.key.isoformat(), _label(group_by, row.key)
            else:
                key, label = row.key, row.label
            out.append(SalesReportRow(key=key, label=label, **values))
        if group_by in ("day", "week", "month"):
            out.sort(key=lambda r: r.key or "")
        else:
            out.sort(key=lambda r: (-r.revenue, r.key is None, r.key or ""))
        return SalesReport(
            group_by=group_by,
            date_from=date_from,
            date_to=date_to,
            currency=await self.repo.org_currency(),
            rows=out,
            totals=totals,
        )

    # Inventory report -----------------------------------------------------------------------------

    async def inventory_report(self) -> tuple[bytes, bool]:
        return await self._cached("inventory.report", {}, self.compute_inventory_report)

    async def compute_inventory_report(self) -> InventoryReport:
        stores: list[StoreValue] = []
        totals = InventoryTotals(
            products=0, quantity=Decimal(0), value_at_cost=ZERO, value_at_sale_price=ZERO
        )
        for row in await self.repo.store_values():
            values = {
                "products": row.products,
                "quantity": Decimal(row.quantity),
                "value_at_cost": money(row.at_cost),
                "value_at_sale_price": money(row.at_sale),
            }
            if row.is_total:
                totals = InventoryTotals(**values)
            else:
                stores.append(StoreValue(store_id=row.store_id, store_name=row.store_name, **values))
        lists = {}
        for which in ("low", "out"):
            count, items = await self.repo.stock_items(which)
            lists[which] = StockItems(
                count=count, items=[StockItem.model_validate(r, from_attributes=True) for r in items]
            )
        return InventoryReport(
            currency=await self.repo.org_currency(),
            stores=stores,
            totals=totals,
            low_stock=lists["low"],
            out_of_stock=lists["out"],
        )

    # Customer segments ----------------------------------------------------------------------------

    async def customer_segments(
        self, as_of: date | None, segment: str | None, limit: int, offset: int
    ) -> tuple[bytes, bool]:
        day = as_of or datetime.now(UTC).date()
        params = {"as_of": day, "segment": segment, "limit": limit, "offset": offset}
        return await self._cached(
            "customers.segments", params, lambda: self.compute_segments(day, segment, limit, offset)
        )

    async def compute_segments(
        self, as_of: date, segment: str | None, limit: int, offset: int
    ) -> CustomerSegments:
        end = period_bounds(as_of, as_of)[1]
        found = {row.segment: row for row in await self.repo.segments(as_of, end)}
        summary = [
            SegmentFigures(
                segment=name,
                customers=found[name].customers if name in found else 0,
                revenue=money(found[name].revenue) if name in found else ZERO,
            )
            for name in SEGMENTS
        ]
        total, rows = await self.repo.customers(as_of, end, segment, limit, offset)
        items = [CustomerRfm.model_validate({**r._mapping, "monetary": money(r.monetary)}) for r in rows]
        return CustomerSegments(
            as_of=as_of,
            currency=await self.repo.org_currency(),
            segments=summary,
            customers=Page(items=items, total=total, limit=limit, offset=offset),
        )
