from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Computed, Double, ForeignKey, Index, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from crm.core.models import Base, IdMixin, TenantMixin, utcnow


class DealHistory(IdMixin, TenantMixin, Base):
    """One row per stage or status change of a deal (`field` says which).

    Stage rows are stays: a deal enters `to_value` at `created_at` and leaves it at its next stage
    row, whose `created_at` is copied into `left_at` when that row is written (null while the stay is
    open; always null on status rows). `stay_seconds` is the length of a completed stay, and
    `deal_deleted` mirrors the deal's soft delete (kept by a trigger on `deal`), so the funnel's
    medians read one partial index per stage.
    """

    __tablename__ = "deal_history"
    __table_args__ = (
        Index("ix_deal_history_deal", "deal_id", "created_at"),
        Index("ix_deal_history_org_pipeline", "organization_id", "pipeline_id", "field"),
        # Completed stays of live deals in length order per stage: a median is an offset into it.
        Index(
            "ix_deal_history_completed_stays",
            "organization_id",
            "pipeline_id",
            "to_value",
            "stay_seconds",
            postgresql_where=text("field = 'stage' AND stay_seconds IS NOT NULL AND NOT deal_deleted"),
        ),
    )

    deal_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("deal.id", ondelete="CASCADE"))
    pipeline_id: Mapped[int] = mapped_column(BigInteger)
    field: Mapped[str] = mapped_column(String(10))  # stage | status
    from_value: Mapped[str | None] = mapped_column(String(50))
    to_value: Mapped[str] = mapped_column(String(50))
    actor_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("user.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), default=utcnow)
    left_at: Mapped[datetime | None]
    stay_seconds: Mapped[float | None] = mapped_column(
        Double, Computed("date_part('epoch', left_at - created_at)", persisted=True)
    )
    deal_deleted: Mapped[bool] = mapped_column(default=False, server_default="false")
