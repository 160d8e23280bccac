from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Computed, ForeignKey, Index, Integer, Numeric, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from crm.core.models import (
    Base,
    IdMixin,
    SoftDeleteMixin,
    TenantMixin,
    TimestampMixin,
    VersionMixin,
    custom_fields_index,
    name_search_indexes,
    newest_first_index,
)


class Project(IdMixin, TenantMixin, TimestampMixin, VersionMixin, SoftDeleteMixin, Base):
    """An investor's project followed by the agency (PROJECTS.md)."""

    __tablename__ = "project"
    __table_args__ = (
        Index(
            "uq_project_org_external_code",
            "organization_id",
            "external_code",
            unique=True,
            postgresql_where=text("external_code IS NOT NULL"),
        ),
        newest_first_index("project"),
        Index("ix_project_org_status", "organization_id", "status"),
        Index("ix_project_client_id", "client_id"),
        *name_search_indexes("project", "name"),
        custom_fields_index("project"),
    )

    name: Mapped[str] = mapped_column(String(500))
    description: Mapped[str | None] = mapped_column(Text)
    client_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("company.id", ondelete="RESTRICT"))
    industry_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("industry.id", ondelete="RESTRICT")
    )
    district_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("district.id", ondelete="RESTRICT")
    )
    city: Mapped[str | None] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(String(500))
    own_funds_amount: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    requested_support_amount: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    jobs_count: Mapped[int | None] = mapped_column(Integer)
    tax_revenue_amount: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    status: Mapped[str] = mapped_column(String(20), default="draft", server_default="draft")
    #: The status a frozen project resumes to.
    frozen_from: Mapped[str | None] = mapped_column(String(20))
    external_code: Mapped[str | None] = mapped_column(String(100))
    curator_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("user.id", ondelete="SET NULL"))
    custom_fields: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    search_vector: Mapped[str | None] = mapped_column(
        TSVECTOR,
        Computed(
            "to_tsvector('russian', coalesce(name, '') || ' ' || coalesce(external_code, '') || ' ' "
            "|| coalesce(city, '') || ' ' || coalesce(description, ''))",
            persisted=True,
        ),
    )
