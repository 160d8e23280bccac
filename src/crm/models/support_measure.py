from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import BigInteger, CheckConstraint, Date, ForeignKey, Index, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from crm.core.models import Base, IdMixin, TenantMixin, TimestampMixin, VersionMixin


class SupportMeasure(IdMixin, TenantMixin, TimestampMixin, VersionMixin, Base):
    """Support given to a project (`support` in the API): finance, credit, land, equipment, technical."""

    __tablename__ = "support_measure"
    __table_args__ = (
        Index("ix_support_measure_project", "organization_id", "project_id"),
        CheckConstraint(
            "(type IN ('finance', 'credit') AND unit = 'RUB')"
            " OR (type IN ('equipment', 'technical') AND unit = 'pieces')"
            " OR (type = 'land' AND unit IN ('meters', 'square_meters', 'cubic_meters', 'hectares'))",
            name="unit_fits_type",
        ),
        CheckConstraint(
            "date_start IS NULL OR date_end IS NULL OR date_end >= date_start", name="dates_in_order"
        ),
        CheckConstraint("status IN ('requested', 'approved', 'rejected', 'provided')", name="status"),
    )

    project_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("project.id", ondelete="CASCADE"))
    program_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("support_program.id", ondelete="RESTRICT")
    )
    provider_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("support_provider.id", ondelete="RESTRICT")
    )
    type: Mapped[str] = mapped_column(String(20))
    amount: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    unit: Mapped[str] = mapped_column(String(20))
    date_start: Mapped[date | None] = mapped_column(Date)
    date_end: Mapped[date | None] = mapped_column(Date)
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="requested", server_default="requested")
