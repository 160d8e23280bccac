from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from crm.core.models import Base, IdMixin, TenantMixin, utcnow


class ProjectMember(IdMixin, TenantMixin, Base):
    """A user on a project's team with a role `curator | editor | viewer`."""

    __tablename__ = "project_member"
    __table_args__ = (
        UniqueConstraint("project_id", "user_id"),
        Index("ix_project_member_org_user", "organization_id", "user_id"),
    )

    project_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("project.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("user.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), default=utcnow)
