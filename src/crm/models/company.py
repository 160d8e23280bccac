from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Computed, ForeignKey, Index, String, Text, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from crm.core.models import (
    Base,
    IdMixin,
    SoftDeleteMixin,
    SourceMixin,
    TenantMixin,
    TimestampMixin,
    VersionMixin,
)

UNIQUE_SOURCES = "source IN ('manual', 'registration', 'import')"


class Company(IdMixin, TenantMixin, TimestampMixin, VersionMixin, SoftDeleteMixin, SourceMixin, Base):
    __tablename__ = "company"
    __table_args__ = (
        Index(
            "uq_company_org_inn_live",
            "organization_id",
            "inn",
            unique=True,
            postgresql_where=text(f"deleted_at IS NULL AND inn IS NOT NULL AND {UNIQUE_SOURCES}"),
        ),
        Index(
            "uq_company_org_source_external_id",
            "organization_id",
            "source",
            "external_id",
            unique=True,
            postgresql_where=text("external_id IS NOT NULL"),
        ),
        Index("ix_company_org_created", "organization_id", text("created_at DESC"), text("id DESC")),
        Index("ix_company_search", "search_vector", postgresql_using="gin"),
        Index(
            "ix_company_name_trgm", "name", postgresql_using="gin", postgresql_ops={"name": "gin_trgm_ops"}
        ),
        Index(
            "ix_company_custom_fields",
            "custom_fields",
            postgresql_using="gin",
            postgresql_ops={"custom_fields": "jsonb_path_ops"},
        ),
    )

    name: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(20), default="legal_entity", server_default="legal_entity")
    inn: Mapped[str | None] = mapped_column(String(12))
    kpp: Mapped[str | None] = mapped_column(String(9))
    ogrn: Mapped[str | None] = mapped_column(String(15))
    website: Mapped[str | None] = mapped_column(String(300))
    industry: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(32))
    address: Mapped[str | None] = mapped_column(String(500))
    notes: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(ARRAY(String(50)), default=list, server_default="{}")
    owner_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("user.id", ondelete="SET NULL"))
    custom_fields: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    search_vector: Mapped[str | None] = mapped_column(
        TSVECTOR,
        Computed(
            "to_tsvector('russian', coalesce(name, '') || ' ' || coalesce(inn, '') || ' ' "
            "|| coalesce(email, '') || ' ' || coalesce(industry, ''))",
            persisted=True,
        ),
    )
