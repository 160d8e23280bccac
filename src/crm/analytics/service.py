"""Analytics over the organization's CRM data (SPEC §7, §19.4, §19.5).

Every result is cached per organization through `OrgCache` (keyed by endpoint and parameters, stamped
with the organization's generation, which record writes bump after commit), so a repeat costs one
Redis round trip and no JSON work. When Redis is away the figures are computed every time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from crm.analytics.exceptions import PeriodOutOfOrder, PipelineNotFound
from crm.analytics.repository import STATUSES, AnalyticsRepository, Created
from crm.analytics.sales_service import sales_metrics
from crm.analytics.schemas import (
    ZERO,
    CrmMetrics,
    Dashboard,
    DealsByStatus,
    DealSummary,
    Funnel,
    FunnelStage,
    StatusFigures,
)
from crm.core.cache import OrgCache
from crm.core.redis import SafeRedis
from crm.organizations.dependencies import Tenant

CENT = Decimal("0.01")
NEW_DEALS_WINDOW = timedelta(days=30)


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def check_period(date_from: date | None, date_to: date | None) -> None:
    if date_from is not None and date_to is not None and date_from > date_to:
        raise PeriodOutOfOrder()


def created_between(date_from: date | None, date_to: date | None) -> Created:
    """Inclusive UTC dates → [start of date_from, start of the day after date_to)."""
    return Created(
        day_start(date_from) if date_from is not None else None,
        day_start(date_to + timedelta(days=1)) if date_to is not None and date_to < date.max else None,
    )


def money(value: Any) -> Decimal:
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def month_bounds(today: date) -> tuple[date, date]:
    first = today.replace(day=1)
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    return first, last


class AnalyticsService:
    def __init__(self, db: AsyncSession, tenant: Tenant, redis: SafeRedis, ttl_seconds: int) -> None:
        self.organization_id = tenant.organization_id
        self.repo = AnalyticsRepository(db, tenant.organization_id)
        self.cache = OrgCache(redis, ttl_seconds)

    async def _cached(
        self, name: str, params: dict[str, Any], compute: Callable[[], Awaitable[BaseModel]]
    ) -> tuple[bytes, bool]:
        async def value() -> dict[str, Any]:
            result = await compute()
            data: dict[str, Any] = result.model_dump(mode="json")
            return data

        return await self.cache.get_or_compute(self.organization_id, name, params, value)

    # Deals summary ------------------------------------------------------------------------------

    async def summary(self) -> tuple[bytes, bool]:
        return await self._cached("deals.summary", {}, self.compute_summary)

    async def compute_summary(self) -> DealSummary:
        row = await self.repo.deal_summary(datetime.now(UTC) - NEW_DEALS_WINDOW)
        figures = row._mapping
        by_status = {
            status: StatusFigures(count=figures[f"{status}_count"], amount=money(figures[f"{status}_amount"]))
            for status in STATUSES
        }
        won, lost = by_status["won"].count, by_status["lost"].count
        won_amount = by_status["won"].amount
        won_in_currency = row.won_in_currency
        return DealSummary(
            total_deals=row.total,
            by_status=DealsByStatus(**by_status),
            won_amount=won_amount,
            average_won_amount=money(won_amount / won_in_currency) if won_in_currency else ZERO,
            win_rate=won / (won + lost) if won + lost else 0.0,
            new_last_30_days=row.new_since,
            currency=row.currency,
        )

    # Funnel ----------------------------------------------------------------------------------

    async def funnel(
        self, pipeline_id: int | None, date_from: date | None, date_to: date | None
    ) -> tuple[bytes, bool]:
        check_period(date_from, date_to)
        params = {"pipeline_id": pipeline_id, "date_from": date_from, "date_to": date_to}
        return await self._cached(
            "deals.funnel", params, lambda: self.compute_funnel(pipeline_id, date_from, date_to)
        )

    async def compute_funnel(
        self, pipeline_id: int | None, date_from: date | None, date_to: date | None
    ) -> Funnel:
        pipeline = await self.repo.pipeline(pipeline_id)
        if pipeline is None:
            raise PipelineNotFound()
        created = created_between(date_from, date_to)
        keys = [s.key for s in pipeline.stages]
        history = await self.repo.stage_figures(pipeline.id, keys, pipeline.currency, created)
        now_in = history.now_in
        stages: list[FunnelStage] = []
        previous: int | None = None
        for i, stage in enumerate(pipeline.stages):
            if stage.is_archived:
                continue
            count, amount = now_in.get(stage.key, (0, ZERO))
            reached = history.reached[i]
            stages.append(
                FunnelStage(
                    stage=stage.key,
                    name=stage.name,
                    count=count,
                    amount=money(amount),
                    reached=reached,
                    conversion=reached / previous if previous else None,
                    median_seconds_in_stage=history.median_seconds[i],
                )
            )
            previous = reached
        return Funnel(
            pipeline_id=pipeline.id,
            date_from=date_from,
            date_to=date_to,
            currency=pipeline.currency,
            stages=stages,
        )

    # Dashboard -------------------------------------------------------------------------------

    async def dashboard(self, date_from: date | None, date_to: date | None) -> tuple[bytes, bool]:
        first, last = month_bounds(datetime.now(UTC).date())
        period = (date_from or first, date_to or last)
        check_period(*period)
        params = {"month": first, "date_from": period[0], "date_to": period[1]}
        return await self._cached("dashboard", params, lambda: self.compute_dashboard(first, *period))

    async def compute_dashboard(self, month_start: date, date_from: date, date_to: date) -> Dashboard:
        row = await self.repo.crm_dashboard(day_start(month_start), datetime.now(UTC))
        crm = CrmMetrics(
            open_deals=row.open_deals,
            pipeline_value=money(row.pipeline_value),
            won_this_month=StatusFigures(count=row.won_count, amount=money(row.won_amount)),
            overdue_tasks=row.overdue_tasks,
            currency=row.currency,
        )
        # The sales half comes from synced MoySklad documents; `available` is false until there are any.
        sales = await sales_metrics(self.repo.session, self.organization_id, date_from, date_to, row.currency)
        return Dashboard(crm=crm, sales=sales)
