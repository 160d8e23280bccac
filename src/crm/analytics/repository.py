"""Analytics queries. Every statement is scoped to one organization and to live deals."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Double, Row, and_, func, literal, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from crm.models import Deal, DealHistory, Organization, Pipeline, PipelineStage, Task

STATUSES = ("new", "in_progress", "won", "lost")
OPEN_STATUSES = ("new", "in_progress")
OPEN_TASK_STATUSES = ("open", "in_progress")


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
class StageFigures:
    """Per stage: live deals now in it (count, amount by key), and by index into the stages given,
    deals that reached it and the median completed stay."""

    now_in: dict[str, tuple[int, Decimal]]
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

    async def stage_figures(
        self, pipeline_id: int, keys: Sequence[str], currency: str, created: Created
    ) -> StageFigures:
        """Per stage of the pipeline: live deals now in it, deals that reached it, median stay.

        Kept at write time, so nothing here scans the stage history: each deal carries the stages it
        ever entered (`entered_stages`), so the reached count of stage i is the number of live deals
        that entered i or any later stage (SPEC §19.4), counted in the same pass over the pipeline's
        live deals (one covering index) as the deals now in each stage. Completed stays carry their
        length and their deal's deletion, so a median is read from one partial index per stage."""
        if not keys:
            return StageFigures({}, [], [])
        d = Deal
        stmt = (
            select(
                d.stage,
                d.entered_stages,
                func.count(),
                func.coalesce(func.sum(d.amount).filter(d.currency == currency), 0),
            )
            .where(*self._live_deals(), d.pipeline_id == pipeline_id, *created.where())
            .group_by(d.stage, d.entered_stages)
        )
        medians_elsewhere = None
        if created.unbounded and isinstance(self.session.bind, AsyncEngine):
            # The medians read other indexes: on a connection of their own, at the same time.
            medians_elsewhere = asyncio.ensure_future(self._medians_on_own_connection(pipeline_id, keys))
        try:
            # The covering index holds every column read here, a third of the table's width.
            await self._planner(seqscan="off", bitmapscan="off")
            groups = (await self.session.execute(stmt)).all()
            await self._planner(seqscan="on", bitmapscan="on")
        except BaseException:
            if medians_elsewhere is not None:
                medians_elsewhere.cancel()
                await asyncio.gather(medians_elsewhere, return_exceptions=True)
            raise
        now_in: dict[str, tuple[int, Decimal]] = {}
        reached = [0] * len(keys)
        position = {key: i for i, key in enumerate(keys)}
        for stage, entered, n, amount in groups:
            count, total = now_in.get(stage, (0, Decimal(0)))
            now_in[stage] = (count + int(n), total + Decimal(amount))
            furthest = max((position[s] for s in entered if s in position), default=-1)
            for i in range(furthest + 1):
                reached[i] += int(n)
        if medians_elsewhere is not None:
            medians = await medians_elsewhere
        elif created.unbounded:
            medians = await self._medians_from_index(pipeline_id, keys)
        else:
            medians = await self._medians_of_deals_created(pipeline_id, keys, created)
        return StageFigures(now_in, reached, medians)

    async def _medians_on_own_connection(self, pipeline_id: int, keys: Sequence[str]) -> list[float | None]:
        engine = self.session.bind
        assert isinstance(engine, AsyncEngine)
        async with AsyncSession(engine) as session:
            other = AnalyticsRepository(session, self.organization_id)
            return await other._medians_from_index(pipeline_id, keys)

    async def _planner(self, **switches: str) -> None:
        """Planner switches for the rest of the transaction (`enable_<name>`)."""
        await self.session.execute(
            select(*(func.set_config(f"enable_{name}", value, True) for name, value in switches.items()))
        )

    def _completed_stays(self, pipeline_id: int, key: str) -> list[ColumnElement[bool]]:
        h = DealHistory
        return [
            h.organization_id == self.organization_id,
            h.pipeline_id == pipeline_id,
            h.field == "stage",
            h.to_value == key,
            h.stay_seconds.is_not(None),
            ~h.deal_deleted,  # spelled as the partial index predicate, so the planner can use it
        ]

    async def _medians_from_index(self, pipeline_id: int, keys: Sequence[str]) -> list[float | None]:
        """Medians as the middle one or two entries of each stage's completed stays, in length order
        (what `percentile_cont(0.5)` computes), read by offset from the partial index."""
        h = DealHistory
        counts = (
            await self.session.execute(
                select(
                    *(
                        select(func.count()).where(*self._completed_stays(pipeline_id, key)).scalar_subquery()
                        for key in keys
                    )
                )
            )
        ).one()
        middles: list[Any] = []
        for key, n in zip(keys, counts, strict=True):
            if not n:
                middles.append(literal(None, Double()))
                continue
            middle = (
                select(h.stay_seconds)
                .where(*self._completed_stays(pipeline_id, key))
                .order_by(h.stay_seconds)
                .offset((n - 1) // 2)
                .limit(2 - n % 2)
                .subquery()
            )
            middles.append(select(func.avg(middle.c.stay_seconds)).scalar_subquery())
        row = (await self.session.execute(select(*middles))).one()
        return [None if m is None else float(m) for m in row]

    async def _medians_of_deals_created(
        self, pipeline_id: int, keys: Sequence[str], created: Created
    ) -> list[float | None]:
        """Medians of the completed stays of the deals created in a period."""
        h = DealHistory
        deals = select(Deal.id).where(*self._live_deals(), Deal.pipeline_id == pipeline_id, *created.where())
        stmt = select(
            *(
                func.percentile_cont(0.5).within_group(h.stay_seconds).filter(h.to_value == key)
                for key in keys
            )
        ).where(
            h.organization_id == self.organization_id,
            h.pipeline_id == pipeline_id,
            h.field == "stage",
            h.stay_seconds.is_not(None),
            h.deal_id.in_(deals),
        )
        row = (await self.session.execute(stmt)).one()
        return [None if m is None else float(m) for m in row]

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
