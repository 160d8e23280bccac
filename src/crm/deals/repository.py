from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Select, text, update

from crm.core.repository import TenantRepository
from crm.models import Deal, DealHistory
from crm.records.repository import RecordFilters, RecordRepository, filter_records, like_pattern

SORTS = {
    "created_at": Deal.created_at,
    "amount": Deal.amount,
    "expected_close_date": Deal.expected_close_date,
}


@dataclass(frozen=True)
class DealFilters(RecordFilters):
    """The common record filters (owner, created range, `cf.<key>`; deals have no tags) plus these."""

    pipeline_id: int | None = None
    stage: str | None = None
    status: str | None = None
    contact_id: int | None = None
    company_id: int | None = None
    amount_min: Decimal | None = None
    amount_max: Decimal | None = None
    q: str | None = None


class DealRepository(RecordRepository[Deal]):
    model = Deal
    sorts = SORTS

    def filtered(self, f: DealFilters) -> Select[tuple[Deal]]:
        stmt = filter_records(self.base(), Deal, f)
        equal = (
            (Deal.pipeline_id, f.pipeline_id),
            (Deal.stage, f.stage),
            (Deal.status, f.status),
            (Deal.contact_id, f.contact_id),
            (Deal.company_id, f.company_id),
        )
        for column, value in equal:
            if value is not None:
                stmt = stmt.where(column == value)
        if f.amount_min is not None:
            stmt = stmt.where(Deal.amount >= f.amount_min)
        if f.amount_max is not None:
            stmt = stmt.where(Deal.amount <= f.amount_max)
        if f.q:
            stmt = stmt.where(Deal.title.ilike(like_pattern(f.q)))
        return stmt


class DealHistoryRepository(TenantRepository[DealHistory]):
    model = DealHistory

    async def of_deal(self, deal_id: int, limit: int, offset: int) -> tuple[Sequence[DealHistory], int]:
        stmt = self.base().where(DealHistory.deal_id == deal_id)
        return await self.page(stmt, [DealHistory.created_at.desc(), DealHistory.id.desc()], limit, offset)

    async def close_stay(self, deal_id: int, at: datetime) -> None:
        """The deal leaves its current stage at `at`: stamp `left_at` on its open stage row."""
        await self.session.execute(
            update(DealHistory)
            .where(
                DealHistory.organization_id == self.organization_id,
                DealHistory.deal_id == deal_id,
                DealHistory.field == "stage",
                DealHistory.left_at.is_(None),
            )
            .values(left_at=at)
            .execution_options(synchronize_session=False)
        )

    async def record_moves(self, moves: Sequence[HistoryMove]) -> None:
        """The rows the service writes per change, for many deals at once (a provider sync): the open
        stays of the deals entering a stage are closed at the move's time, then the rows are inserted,
        one statement each."""
        if not moves:
            return
        entering: dict[datetime, list[int]] = {}
        for move in moves:
            if move.field == "stage" and move.from_value is not None:
                entering.setdefault(move.at, []).append(move.deal_id)
        for at, deal_ids in entering.items():
            await self.session.execute(
                update(DealHistory)
                .where(
                    DealHistory.organization_id == self.organization_id,
                    DealHistory.deal_id.in_(deal_ids),
                    DealHistory.field == "stage",
                    DealHistory.left_at.is_(None),
                )
                .values(left_at=at)
                .execution_options(synchronize_session=False)
            )
        # One statement for all rows (arrays, not one execution per row): the statement trigger that
        # keeps `deal.entered_stages` then runs once.
        await self.session.execute(
            text(
                "INSERT INTO deal_history (organization_id, deal_id, pipeline_id, field, from_value, "
                "to_value, actor_id, created_at) SELECT CAST(:org AS bigint), m.* FROM unnest("
                "CAST(:deals AS bigint[]), CAST(:pipelines AS bigint[]), CAST(:fields AS varchar[]), "
                "CAST(:from_values AS varchar[]), CAST(:to_values AS varchar[]), CAST(:actors AS bigint[]), "
                "CAST(:ats AS timestamptz[])) AS m"
            ),
            {
                "org": self.organization_id,
                "deals": [m.deal_id for m in moves],
                "pipelines": [m.pipeline_id for m in moves],
                "fields": [m.field for m in moves],
                "from_values": [m.from_value for m in moves],
                "to_values": [m.to_value for m in moves],
                "actors": [m.actor_id for m in moves],
                "ats": [m.at for m in moves],
            },
        )


@dataclass(frozen=True, slots=True)
class HistoryMove:
    """One `deal_history` row to write: a deal entering a stage or a status at `at`."""

    deal_id: int
    pipeline_id: int
    field: str  # stage | status
    from_value: str | None
    to_value: str
    at: datetime
    actor_id: int | None = None
