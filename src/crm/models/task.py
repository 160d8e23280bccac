from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from crm.core.models import Base, IdMixin, TenantMixin, TimestampMixin, VersionMixin, newest_first_index


class Task(IdMixin, TenantMixin, TimestampMixin, VersionMixin, Base):
    __tablename__ = "task"
    __table_args__ = (
        newest_first_index("task"),
        Index("ix_task_assignee_status", "organization_id", "assignee_id", "status"),
        Index("ix_task_deal_id", "deal_id"),
        Index("ix_task_contact_id", "contact_id"),
        Index("ix_task_project_id", "project_id"),
    )

    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text)
    deal_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("deal.id", ondelete="SET NULL"))
    contact_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("contact.id", ondelete="SET NULL"))
    project_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("project.id", ondelete="SET NULL"))
    assignee_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("user.id", ondelete="SET NULL"))
    created_by_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("user.id", ondelete="SET NULL"))
    due_date: Mapped[datetime | None]
    priority: Mapped[str] = mapped_column(String(10), default="normal", server_default="normal")
    status: Mapped[str] = mapped_column(String(20), default="open", server_default="open")
    completed_at: Mapped[datetime | None]
