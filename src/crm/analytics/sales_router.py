"""Sales, inventory and customer analytics (SPEC §7), cached per organization like the rest of
`/analytics` (`X-Cache: HIT|MISS`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from crm.analytics.router import SalesFrom, SalesTo, cached_json, cached_service, ok
from crm.analytics.sales_schemas import CustomerSegments, GroupBy, InventoryReport, SalesReport, Segment
from crm.analytics.sales_service import SalesAnalyticsService
from crm.core.openapi import errors
from crm.core.schemas import IsoDate, Paging
from crm.organizations.dependencies import require

router = APIRouter(prefix="/analytics", tags=["analytics"])

SalesReader = Annotated[
    SalesAnalyticsService, Depends(cached_service(SalesAnalyticsService, require("sales:read")))
]
InventoryReader = Annotated[
    SalesAnalyticsService, Depends(cached_service(SalesAnalyticsService, require("inventory:read")))
]


@router.get("/sales/report", responses={**ok(SalesReport), **errors(400, 401, 403, 422)})
async def sales_report(
    service: SalesReader,
    group_by: Annotated[
        GroupBy, Query(description="day, week (from Monday), month, product or customer")
    ] = "day",
    date_from: SalesFrom = None,
    date_to: SalesTo = None,
) -> Response:
    """Revenue, cost, profit, margin, orders and units of posted shipments in the period (UTC dates,
    inclusive), per group and in total. Customer orders are not sales until shipped."""
    return cached_json(await service.sales_report(group_by, date_from, date_to))


@router.get("/inventory/report", responses={**ok(InventoryReport), **errors(400, 401, 403, 422)})
async def inventory_report(service: InventoryReader) -> Response:
    """Stock value at cost (buy price) and at sale price per store and in total; products below their
    minimum stock and products out of stock."""
    return cached_json(await service.inventory_report())


@router.get("/customers/segments", responses={**ok(CustomerSegments), **errors(400, 401, 403, 422)})
async def customer_segments(
    service: SalesReader,
    paging: Paging,
    as_of: Annotated[IsoDate | None, Query(description="Score as of this UTC date (default today)")] = None,
    segment: Annotated[Segment | None, Query(description="Only customers of this segment")] = None,
) -> Response:
    """RFM segmentation of the customers of posted shipments up to `as_of`: recency (R 5 up to 30 days
    since the last purchase, 4 up to 60, 3 up to 90, 2 up to 180, else 1), frequency (F 5 from 10
    purchases, 4 from 5, 3 from 3, 2 for 2, else 1), monetary (M: the percent rank of the revenue
    among the organization's customers, in fifths). Segments by R and F: champions (R≥4, F≥4), loyal
    (R≥3, F≥3), new (R≥4, F=1), promising (other R≥3), at_risk (F≥3), hibernating (R=2), lost."""
    return cached_json(await service.customer_segments(as_of, segment, paging.limit, paging.offset))
