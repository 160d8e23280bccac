from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from crm.core.models import Base, IdMixin, TenantMixin, utcnow


class ProjectStatusHistory(IdMixin, TenantMixin, Base):
    """One row per status move of a project (`from_status` is null for the first)."""

    __tablename__ = "project_status_history"
    __table_args__ = (Index("ix_project_status_history_project", "project_id", "created_at"),)

    project_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("project.id", ondelete="CASCADE"))
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("user.id", ondelete="SET NULL"))
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), default=utcnow)
