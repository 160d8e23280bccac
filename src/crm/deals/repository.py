from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Select, insert, update

from crm.core.repository import TenantRepository, order_by_sort
from crm.models import Deal, DealHistory
from crm.records.repository import RecordFilters, filter_records, like_pattern

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


class DealRepository(TenantRepository[Deal]):
    model = Deal

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

    async def list(
        self, f: DealFilters, sort: str | None, limit: int, offset: int
    ) -> tuple[Sequence[Deal], int]:
        return await self.page(self.filtered(f), order_by_sort(sort, SORTS, Deal.id), limit, offset)


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
        await self.session.execute(
            insert(DealHistory),
            [
                {
                    "organization_id": self.organization_id,
                    "deal_id": move.deal_id,
                    "pipeline_id": move.pipeline_id,
                    "field": move.field,
                    "from_value": move.from_value,
                    "to_value": move.to_value,
                    "actor_id": move.actor_id,
                    "created_at": move.at,
                }
                for move in moves
            ],
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
