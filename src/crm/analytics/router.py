"""Analytics (SPEC §7). Answers are cached per organization and sent as the cached JSON bytes;
`X-Cache: HIT|MISS` says which. The schemas are declared for OpenAPI through `responses`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from crm.analytics.schemas import Dashboard, DealSummary, Funnel
from crm.analytics.service import AnalyticsService
from crm.core.db import SessionDep
from crm.core.openapi import errors
from crm.core.redis import SafeRedis
from crm.core.schemas import BIGINT_MAX, IsoDate
from crm.organizations.dependencies import Tenant, require

router = APIRouter(prefix="/analytics", tags=["analytics"])

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


A = TypeVar("A")


def cached_service(
    factory: Callable[[AsyncSession, Tenant, SafeRedis, int], A],
    tenant_dependency: Callable[..., Awaitable[Tenant]],
) -> Callable[..., Awaitable[A]]:
    """Dependency: the analytics service `factory(session, tenant, redis, cache TTL)` for the tenant
    that `tenant_dependency` admits."""

    async def dependency(request: Request, db: SessionDep, tenant: Tenant = Depends(tenant_dependency)) -> A:
        return factory(db, tenant, request.app.state.redis, request.app.state.settings.cache_ttl_seconds)

    return dependency


Reader = Annotated[AnalyticsService, Depends(cached_service(AnalyticsService, require("analytics:read")))]


def cached_json(result: tuple[bytes, bool]) -> Response:
    payload, hit = result
    return Response(payload, media_type="application/json", headers={"X-Cache": "HIT" if hit else "MISS"})


@router.get("/deals/summary", responses={**ok(DealSummary), **errors(400, 401, 403, 422)})
async def deals_summary(service: Reader) -> Response:
    """Live deals by status (counts in every currency, amounts in the organization's currency), won
    amount, average won amount, win rate = won / (won + lost), and deals created in the last 30 days."""
    return cached_json(await service.summary())


@router.get("/deals/funnel", responses={**ok(Funnel), **errors(400, 401, 403, 404, 422)})
async def deals_funnel(
    service: Reader,
    pipeline_id: Annotated[
        int | None, Query(ge=1, le=BIGINT_MAX, description="Default: the organization's default pipeline")
    ] = None,
    date_from: Annotated[IsoDate | None, Query(description="Deals created on or after this UTC date")] = None,
    date_to: Annotated[IsoDate | None, Query(description="Deals created on or before this UTC date")] = None,
) -> Response:
    """The pipeline's stages in order: live deals now in each (count, amount), deals that ever reached
    it or a later stage (from the stage history), conversion from the previous stage and the median
    time in the stage. Archived stages are left out of the list."""
    return cached_json(await service.funnel(pipeline_id, date_from, date_to))


@router.get("/dashboard", responses={**ok(Dashboard), **errors(400, 401, 403, 422)})
async def dashboard(
    service: Reader,
    date_from: SalesFrom = None,
    date_to: SalesTo = None,
) -> Response:
    """Key figures. `crm`: open deals, their value, deals won this month, overdue tasks. `sales`:
    revenue, orders, average check, top products and low-stock count for the period, from MoySklad
    sales documents — zero/empty with `available: false` until they are synced."""
    return cached_json(await service.dashboard(date_from, date_to))
