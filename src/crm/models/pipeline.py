from __future__ import annotations

from sqlalchemy import Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from crm.core.models import Base, IdMixin, TenantMixin, TimestampMixin, VersionMixin


class Pipeline(IdMixin, TenantMixin, TimestampMixin, VersionMixin, Base):
    __tablename__ = "pipeline"
    __table_args__ = (
        Index("uq_pipeline_org_default", "organization_id", unique=True, postgresql_where=text("is_default")),
        Index("ix_pipeline_organization_id", "organization_id"),
    )

    name: Mapped[str] = mapped_column(String(200))
    is_default: Mapped[bool] = mapped_column(default=False, server_default="false")
