"""Analytics (SPEC §7). Answers are cached per organization and sent as the cached JSON bytes;
`X-Cache: HIT|MISS` says which. The schemas are declared for OpenAPI through `responses`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from crm.analytics.schemas import Dashboard, DealSummary, Funnel
from crm.analytics.service import AnalyticsService
from crm.core.db import SessionDep
from crm.core.openapi import errors
from crm.core.schemas import BIGINT_MAX, IsoDate
from crm.organizations.dependencies import Tenant, require

router = APIRouter(prefix="/analytics", tags=["analytics"])

Reader = Annotated[Tenant, Depends(require("analytics:read"))]
SalesFrom = Annotated[
    IsoDate | None, Query(description="Sales period start (default: the 1st of this month)")
]
SalesTo = Annotated[IsoDate | None, Query(description="Sales period end (default: this month's last day)")]

X_CACHE = {
    "X-Cache": {
        "description": "`HIT` when served from the organization's cache, else `MISS`",
        "schema": {"type": "string", "enum": ["HIT", "MISS"]},
    }
}


def ok(model: type[Any]) -> dict[int | str, dict[str, Any]]:
    return {200: {"model": model, "description": "Successful Response", "headers": X_CACHE}}


def service(request: Request, db: SessionDep, tenant: Tenant) -> AnalyticsService:
    return AnalyticsService(db, tenant, request.app.state.redis, request.app.state.settings.cache_ttl_seconds)


def cached_json(result: tuple[bytes, bool]) -> Response:
    payload, hit = result
    return Response(payload, media_type="application/json", headers={"X-Cache": "HIT" if hit else "MISS"})


@router.get("/deals/summary", responses={**ok(DealSummary), **errors(400, 401, 403, 422)})
async def deals_summary(request: Request, tenant: Reader, db: SessionDep) -> Response:
    """Live deals by status (counts in every currency, amounts in the organization's currency), won
    amount, average won amount, win rate = won / (won + lost), and deals created in the last 30 days."""
    return cached_json(await service(request, db, tenant).summary())


@router.get("/deals/funnel", responses={**ok(Funnel), **errors(400, 401, 403, 404, 422)})
async def deals_funnel(
    request: Request,
    tenant: Reader,
    db: SessionDep,
    pipeline_id: Annotated[
        int | None, Query(ge=1, le=BIGINT_MAX, description="Default: the organization's default pipeline")
    ] = None,
    date_from: Annotated[IsoDate | None, Query(description="Deals created on or after this UTC date")] = None,
    date_to: Annotated[IsoDate | None, Query(description="Deals created on or before this UTC date")] = None,
) -> Response:
    """The pipeline's stages in order: live deals now in each (count, amount), deals that ever reached
    it or a later stage (from the stage history), conversion from the previous stage and the median
    time in the stage. Archived stages are left out of the list."""
    return cached_json(await service(request, db, tenant).funnel(pipeline_id, date_from, date_to))


@router.get("/dashboard", responses={**ok(Dashboard), **errors(400, 401, 403, 422)})
async def dashboard(
    request: Request,
    tenant: Reader,
    db: SessionDep,
    date_from: SalesFrom = None,
    date_to: SalesTo = None,
) -> Response:
    """Key figures. `crm`: open deals, their value, deals won this month, overdue tasks. `sales`:
    revenue, orders, average check, top products and low-stock count for the period, from MoySklad
    sales documents — zero/empty with `available: false` until they are synced."""
    return cached_json(await service(request, db, tenant).dashboard(date_from, date_to))
