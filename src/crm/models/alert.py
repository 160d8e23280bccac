from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from crm.core.models import Base, IdMixin, TenantMixin, newest_first_index, utcnow


class Alert(IdMixin, TenantMixin, Base):
    """A system alert for an organization's admins (low stock, sync failure).

    `key` identifies what the alert is about (e.g. `low_stock:product:42`); at most one open
    (neither acknowledged nor resolved) alert per key.
    """

    __tablename__ = "alert"
    __table_args__ = (
        newest_first_index("alert"),
        Index(
            "uq_alert_org_key_open",
            "organization_id",
            "key",
            unique=True,
            postgresql_where=text("acknowledged_at IS NULL AND resolved_at IS NULL"),
        ),
    )

    kind: Mapped[str] = mapped_column(String(30))
    key: Mapped[str] = mapped_column(String(200))
    severity: Mapped[str] = mapped_column(String(10), default="warning", server_default="warning")
    title: Mapped[str] = mapped_column(String(300))
    message: Mapped[str | None] = mapped_column(Text)
    entity_type: Mapped[str | None] = mapped_column(String(30))
    entity_id: Mapped[int | None] = mapped_column(BigInteger)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), default=utcnow)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("user.id", ondelete="SET NULL")
    )
    resolved_at: Mapped[datetime | None]
