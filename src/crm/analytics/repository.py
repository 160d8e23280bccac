"""Analytics queries. Every statement is scoped to one organization and to live deals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, case, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Deal, DealHistory, Organization, Pipeline, PipelineStage, Task

STATUSES = ("new", "in_progress", "won", "lost")
OPEN_STATUSES = ("new", "in_progress")
OPEN_TASK_STATUSES = ("open", "in_progress")
#: The funnel's sort of ~2 rows per deal fits in memory with this (the 4 MB default spills to disk).
FUNNEL_WORK_MEM = "64MB"


@dataclass(frozen=True)
class Created:
    """`created_at` bounds of the deals an analytics figure covers: [start, end)."""

    start: datetime | None = None
    end: datetime | None = None

    def where(self) -> list[ColumnElement[bool]]:
        clauses = []
        if self.start is not None:
            clauses.append(Deal.created_at >= self.start)
        if self.end is not None:
            clauses.append(Deal.created_at < self.end)
        return clauses

    @property
    def unbounded(self) -> bool:
        return self.start is None and self.end is None


@dataclass(frozen=True)
class Stage:
    key: str
    name: str
    is_archived: bool


@dataclass(frozen=True)
class PipelineStages:
    id: int
    currency: str
    stages: list[Stage]


@dataclass(frozen=True)
class StageHistory:
    """Per stage (by index into the stages given): deals that reached it and the median stay."""

    reached: list[int]
    median_seconds: list[float | None]


class AnalyticsRepository:
    def __init__(self, session: AsyncSession, organization_id: int) -> None:
        self.session = session
        self.organization_id = organization_id

    def _live_deals(self) -> list[ColumnElement[bool]]:
        return [Deal.organization_id == self.organization_id, Deal.deleted_at.is_(None)]

    def _currency(self) -> Any:
        return select(Organization.currency).where(Organization.id == self.organization_id).scalar_subquery()

    async def deal_summary(self, since: datetime) -> Row[Any]:
        """One pass over the live deals: counts per status (every currency), amounts per status (the
        organization's currency only), won deals in that currency, deals created since `since`."""
        currency = self._currency()
        in_currency = Deal.currency == currency
        columns: list[Any] = [currency.label("currency"), func.count().label("total")]
        for status in STATUSES:
            columns.append(func.count().filter(Deal.status == status).label(f"{status}_count"))
            columns.append(
                func.coalesce(func.sum(Deal.amount).filter(Deal.status == status, in_currency), 0).label(
                    f"{status}_amount"
                )
            )
        columns.append(func.count().filter(Deal.status == "won", in_currency).label("won_in_currency"))
        columns.append(func.count().filter(Deal.created_at >= since).label("new_since"))
        return (await self.session.execute(select(*columns).where(*self._live_deals()))).one()

    async def pipeline(self, pipeline_id: int | None) -> PipelineStages | None:
        """The pipeline (the organization's default one when `pipeline_id` is None) with its stages in
        funnel order, archived ones included (they still order the moves), and the organization's
        currency; None when the organization has no such pipeline."""
        stmt = (
            select(
                Pipeline.id,
                Organization.currency,
                PipelineStage.key,
                PipelineStage.name,
                PipelineStage.is_archived,
            )
            .join(Organization, Organization.id == Pipeline.organization_id)
            .outerjoin(PipelineStage, PipelineStage.pipeline_id == Pipeline.id)
            .where(Pipeline.organization_id == self.organization_id)
            .order_by(PipelineStage.position, PipelineStage.id)
        )
        which = Pipeline.id == pipeline_id if pipeline_id is not None else Pipeline.is_default.is_(True)
        stmt = stmt.where(which)
        rows = (await self.session.execute(stmt)).all()
        if not rows:
            return None
        stages = [Stage(r.key, r.name, r.is_archived) for r in rows if r.key is not None]
        return PipelineStages(rows[0].id, rows[0].currency, stages)

    async def deals_by_stage(
        self, pipeline_id: int, currency: str, created: Created
    ) -> dict[str, tuple[int, Decimal]]:
        """Live deals now in each stage of the pipeline: count and amount (in `currency`)."""
        stmt = (
            select(
                Deal.stage,
                func.count(),
                func.coalesce(func.sum(Deal.amount).filter(Deal.currency == currency), 0),
            )
            .where(*self._live_deals(), Deal.pipeline_id == pipeline_id, *created.where())
            .group_by(Deal.stage)
        )
        rows = (await self.session.execute(stmt)).all()
        return {stage: (int(n), Decimal(amount)) for stage, n, amount in rows}

    async def stage_history(self, pipeline_id: int, keys: Sequence[str], created: Created) -> StageHistory:
        """Reached counts and median stays from the pipeline's stage history, without a window.

        The stage rows of a deal are its stays: a stay in `to_value` starts at the row's `created_at`
        and ends at `left_at`, stamped when the deal's next stage row was written (null while open).
        The medians read the completed stays. The reached count of stage i is the number of deals
        whose furthest stage (the highest index among the stages they entered, by the current order)
        is ≥ i — the deals that entered i or any later stage (SPEC §19.4); that furthest stage comes
        from one pass per deal over the stage-stays index, in deal order (no sort, no hash)."""
        if not keys:
            return StageHistory([], [])
        h = DealHistory
        index = case({key: i for i, key in enumerate(keys)}, value=h.to_value, else_=None)
        if created.unbounded:
            # Few deals are deleted: an anti-join against them is far cheaper than joining every live one.
            deal_filter: ColumnElement[bool] = ~exists().where(
                Deal.id == h.deal_id,
                Deal.organization_id == self.organization_id,
                Deal.deleted_at.is_not(None),
            )
        else:
            deal_filter = h.deal_id.in_(select(Deal.id).where(*self._live_deals(), *created.where()))
        rows = [h.organization_id == self.organization_id, h.pipeline_id == pipeline_id, h.field == "stage"]
        furthest = (
            select(func.max(index).label("furthest"))
            .where(*rows, deal_filter)
            .group_by(h.deal_id)
            .subquery("deal_furthest")
        )
        reached = select(*(func.count().filter(furthest.c.furthest >= i) for i in range(len(keys))))
        seconds = func.date_part("epoch", h.left_at) - func.date_part("epoch", h.created_at)
        medians = select(
            *(func.percentile_cont(0.5).within_group(seconds).filter(h.to_value == key) for key in keys)
        ).where(*rows, h.left_at.is_not(None), deal_filter)
        await self.session.execute(
            select(
                func.set_config("work_mem", FUNNEL_WORK_MEM, True),
                func.set_config("enable_hashagg", "off", True),
            )
        )
        counts = (await self.session.execute(reached)).one()
        await self.session.execute(select(func.set_config("enable_hashagg", "on", True)))
        stays = (await self.session.execute(medians)).one()
        return StageHistory(
            reached=[int(n) for n in counts],
            median_seconds=[None if m is None else float(m) for m in stays],
        )

    async def crm_dashboard(self, month_start: datetime, now: datetime) -> Row[Any]:
        """Open deals and their value, deals won since `month_start`, overdue tasks — one statement."""
        currency = self._currency()
        in_currency = Deal.currency == currency
        is_open = Deal.status.in_(OPEN_STATUSES)
        won_now = and_(Deal.status == "won", Deal.closed_at >= month_start)
        overdue = (
            select(func.count())
            .where(
                Task.organization_id == self.organization_id,
                Task.status.in_(OPEN_TASK_STATUSES),
                Task.due_date < now,
            )
            .scalar_subquery()
        )
        stmt = select(
            currency.label("currency"),
            func.count().filter(is_open).label("open_deals"),
            func.coalesce(func.sum(Deal.amount).filter(is_open, in_currency), 0).label("pipeline_value"),
            func.count().filter(won_now).label("won_count"),
            func.coalesce(func.sum(Deal.amount).filter(won_now, in_currency), 0).label("won_amount"),
            overdue.label("overdue_tasks"),
        ).where(*self._live_deals())
        return (await self.session.execute(stmt)).one()
