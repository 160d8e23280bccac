from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, func
from sqlalchemy.orm import Mapped, mapped_column

from crm.core.models import Base, utcnow


class WebhookEvent(Base):
    """An inbound provider event already accepted (MoySklad `requestId`, a Bitrix24 event's
    identity), so that retries and replays queue nothing twice. Kept for a few days."""

    __tablename__ = "webhook_event"
    __table_args__ = (Index("ix_webhook_event_created", "created_at"),)

    integration_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("integration.id", ondelete="CASCADE"), primary_key=True
    )
    event_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), default=utcnow)
