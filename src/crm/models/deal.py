from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Computed, Date, ForeignKey, Index, Numeric, String, Text, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from crm.core.models import Base, RecordMixin, record_indexes


class Deal(RecordMixin, Base):
    __tablename__ = "deal"
    __table_args__ = (
        *record_indexes("deal", "title"),
        Index("ix_deal_pipeline_stage", "organization_id", "pipeline_id", "stage"),
        Index("ix_deal_contact_id", "contact_id"),
        # Deleted deals are few; the funnel anti-joins against them.
        Index(
            "ix_deal_org_deleted", "organization_id", "id", postgresql_where=text("deleted_at IS NOT NULL")
        ),
        Index("ix_deal_company_id", "company_id"),
        # The funnel reads live deals of a pipeline from this index alone (no heap visits).
        Index(
            "ix_deal_funnel",
            "organization_id",
            "pipeline_id",
            postgresql_include=["stage", "amount", "currency", "created_at", "entered_stages"],
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    title: Mapped[str] = mapped_column(String(300))
    amount: Mapped[Decimal] = mapped_column(Numeric(18, 2), default=Decimal("0"), server_default="0")
    currency: Mapped[str] = mapped_column(String(3), default="RUB", server_default="RUB")
    contact_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("contact.id", ondelete="SET NULL"))
    company_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("company.id", ondelete="SET NULL"))
    owner_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("user.id", ondelete="SET NULL"))
    pipeline_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("pipeline.id", ondelete="RESTRICT"))
    stage: Mapped[str] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(20), default="new", server_default="new")
    expected_close_date: Mapped[date | None] = mapped_column(Date)
    closed_at: Mapped[datetime | None]
    lost_reason: Mapped[str | None] = mapped_column(Text)
    custom_fields: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    notes: Mapped[str | None] = mapped_column(Text)
    #: Every stage of its pipeline the deal ever entered, kept by a trigger on `deal_history`
    #: inserts (whoever writes them: the API, imports, syncs, demo data).
    entered_stages: Mapped[list[str]] = mapped_column(
        ARRAY(String(50)), default=list, server_default="{}", deferred=True
    )
    search_vector: Mapped[str | None] = mapped_column(
        TSVECTOR,
        Computed("to_tsvector('russian', coalesce(title, '') || ' ' || coalesce(notes, ''))", persisted=True),
    )
