"""Per-organization dictionaries of the projects module: industries, districts, support programs and
the bodies that grant support (providers)."""

from __future__ import annotations

from sqlalchemy import Boolean, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from crm.core.models import Base, IdMixin, TenantMixin, TimestampMixin


class _Named:
    name: Mapped[str] = mapped_column(String(300))


class Industry(IdMixin, TenantMixin, TimestampMixin, _Named, Base):
    __tablename__ = "industry"
    __table_args__ = (Index("uq_industry_org_name", "organization_id", text("lower(name)"), unique=True),)


class District(IdMixin, TenantMixin, TimestampMixin, _Named, Base):
    __tablename__ = "district"
    __table_args__ = (Index("uq_district_org_name", "organization_id", text("lower(name)"), unique=True),)


class SupportProgram(IdMixin, TenantMixin, TimestampMixin, _Named, Base):
    __tablename__ = "support_program"
    __table_args__ = (
        Index("uq_support_program_org_name", "organization_id", text("lower(name)"), unique=True),
    )

    level: Mapped[str] = mapped_column(String(20), default="regional", server_default="regional")
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")


class SupportProvider(IdMixin, TenantMixin, TimestampMixin, _Named, Base):
    """A body granting support measures (e.g. a ministry); `providers` in the API."""

    __tablename__ = "support_provider"
    __table_args__ = (
        Index("uq_support_provider_org_name", "organization_id", text("lower(name)"), unique=True),
    )
