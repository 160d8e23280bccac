from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crm.core.models import Base, IdMixin, TenantMixin, TimestampMixin


class PipelineStage(IdMixin, TenantMixin, TimestampMixin, Base):
    """A stage of a pipeline; `key` is what deals refer to, `position` orders the funnel."""

    __tablename__ = "pipeline_stage"
    __table_args__ = (
        UniqueConstraint("pipeline_id", "key"),
        Index("ix_pipeline_stage_org", "organization_id"),
    )

    pipeline_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("pipeline.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(50))
    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int]
    is_archived: Mapped[bool] = mapped_column(default=False, server_default="false")
