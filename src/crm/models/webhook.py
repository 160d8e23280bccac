from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from crm.core.models import Base, IdMixin, TenantMixin, TimestampMixin, VersionMixin


class Webhook(IdMixin, TenantMixin, TimestampMixin, VersionMixin, Base):
    """An outbound subscription: events matching `events` are POSTed, signed, to `url`."""

    __tablename__ = "webhook"
    __table_args__ = (Index("ix_webhook_org_created", "organization_id", text("created_at DESC")),)

    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str | None] = mapped_column(String(300))
    events: Mapped[list[str]] = mapped_column(ARRAY(String(60)))
    secret: Mapped[str] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(default=True, server_default="true")
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("user.id", ondelete="SET NULL"))
