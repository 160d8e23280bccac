from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from crm.core.models import Base, IdMixin, utcnow


class OutboxEvent(IdMixin, Base):
    """A domain event (`deal.won`, `task.assigned`, …), written in the transaction of the change that
    caused it and published afterwards by the relay (webhook deliveries, notifications)."""

    __tablename__ = "outbox_event"
    __table_args__ = (
        # The relay reads the unpublished rows of one organization in id order.
        Index(
            "ix_outbox_event_unpublished",
            "organization_id",
            "id",
            postgresql_where=text("published_at IS NULL"),
        ),
        Index("ix_outbox_event_created_at", "created_at"),
    )

    organization_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("organization.id", ondelete="CASCADE")
    )
    event_type: Mapped[str] = mapped_column(String(60))
    entity_type: Mapped[str | None] = mapped_column(String(30))
    entity_id: Mapped[int | None] = mapped_column(BigInteger)
    actor_id: Mapped[int | None] = mapped_column(BigInteger)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), default=utcnow)
    published_at: Mapped[datetime | None]
