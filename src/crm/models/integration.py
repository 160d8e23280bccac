from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, LargeBinary, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from crm.core.models import Base, IdMixin, TenantMixin, TimestampMixin, VersionMixin


class Integration(IdMixin, TenantMixin, TimestampMixin, VersionMixin, Base):
    """An organization's connection to a provider (`moysklad`, `bitrix24`, `portal`, …).

    Credentials are a Fernet token of their JSON (never returned by the API); `webhook_secret` is the
    token inbound provider events must carry.
    """

    __tablename__ = "integration"
    __table_args__ = (
        Index("ix_integration_org", "organization_id", "id"),
        Index("ix_integration_due", "next_sync_at", postgresql_where=text("enabled")),
    )

    provider: Mapped[str] = mapped_column(String(50))
    name: Mapped[str] = mapped_column(String(200))
    base_url: Mapped[str | None] = mapped_column(String(500))
    credentials_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    sync_interval_minutes: Mapped[int] = mapped_column(Integer, default=15, server_default="15")
    next_sync_at: Mapped[datetime | None]
    last_sync_at: Mapped[datetime | None]
    last_sync_status: Mapped[str | None] = mapped_column(String(20))
    webhook_secret: Mapped[str] = mapped_column(String(100))
    created_by_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("user.id", ondelete="SET NULL"))
