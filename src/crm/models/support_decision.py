from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, ForeignKey, Index, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from crm.core.models import Base, IdMixin, TenantMixin, utcnow


class SupportDecision(IdMixin, TenantMixin, Base):
    """A committee's decision on a support measure; text and protocol numbers kept as typed."""

    __tablename__ = "support_decision"
    __table_args__ = (Index("ix_support_decision_support", "support_id", "decision_date"),)

    support_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("support_measure.id", ondelete="CASCADE"))
    decision_type: Mapped[str] = mapped_column(String(40))
    decision_date: Mapped[date] = mapped_column(Date)
    protocol_number: Mapped[str | None] = mapped_column(String(100))
    result: Mapped[str] = mapped_column(String(20))
    text: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("user.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), default=utcnow)
