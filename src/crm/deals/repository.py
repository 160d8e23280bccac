from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Select, update

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
