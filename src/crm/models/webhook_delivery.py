from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from crm.core.models import Base, IdMixin, TenantMixin, utcnow


class WebhookDelivery(IdMixin, TenantMixin, Base):
    """One event for one subscription: sent until it succeeds or runs out of attempts. The pair
    (event, webhook) is unique, so relaying an event twice never makes a second delivery."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("event_id", "webhook_id"),
        Index(
            "ix_webhook_delivery_pending",
            "webhook_id",
            "id",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_webhook_delivery_webhook_created", "webhook_id", text("id DESC")),
    )

    webhook_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("webhook.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("outbox_event.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(60))
    #: pending → succeeded, or failed after the last attempt.
    status: Mapped[str] = mapped_column(String(20), default="pending", server_default="pending")
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(server_default=func.now(), default=utcnow)
    response_code: Mapped[int | None]
    duration_ms: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    #: Every attempt: `{attempt, at, response_code, duration_ms, error}`.
    log: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list, server_default="[]")
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), default=utcnow)
