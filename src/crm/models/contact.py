from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Computed, ForeignKey, Index, SmallInteger, String, Text, func, text
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
from crm.models.company import UNIQUE_SOURCES


class Contact(IdMixin, TenantMixin, TimestampMixin, VersionMixin, SoftDeleteMixin, SourceMixin, Base):
    __tablename__ = "contact"
    __table_args__ = (
        # Race-free uniqueness of emails among live, non-synced contacts (SPEC §19.1).
        Index(
            "uq_contact_org_email_live",
            "organization_id",
            func.lower(text("email")),
            unique=True,
            postgresql_where=text(f"deleted_at IS NULL AND email IS NOT NULL AND {UNIQUE_SOURCES}"),
        ),
        Index(
            "uq_contact_org_source_external_id",
            "organization_id",
            "source",
            "external_id",
            unique=True,
            postgresql_where=text("external_id IS NOT NULL"),
        ),
        Index("ix_contact_org_created", "organization_id", text("created_at DESC"), text("id DESC")),
        Index("ix_contact_company_id", "company_id"),
        Index("ix_contact_search", "search_vector", postgresql_using="gin"),
        Index(
            "ix_contact_name_trgm",
            "full_name",
            postgresql_using="gin",
            postgresql_ops={"full_name": "gin_trgm_ops"},
        ),
        # Phones typed in any format are searched by their digits within the stored E.164 (§20.13).
        Index(
            "ix_contact_phone_trgm", "phone", postgresql_using="gin", postgresql_ops={"phone": "gin_trgm_ops"}
        ),
        Index("ix_contact_tags", "tags", postgresql_using="gin"),
        Index(
            "ix_contact_custom_fields",
            "custom_fields",
            postgresql_using="gin",
            postgresql_ops={"custom_fields": "jsonb_path_ops"},
        ),
    )

    full_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(32))
    phone_raw: Mapped[str | None] = mapped_column(String(64))
    company_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("company.id", ondelete="SET NULL"))
    job_title: Mapped[str | None] = mapped_column(String(200))
    age: Mapped[int | None] = mapped_column(SmallInteger)
    gender: Mapped[str | None] = mapped_column(String(20))
    country: Mapped[str | None] = mapped_column(String(100))
    address: Mapped[str | None] = mapped_column(String(500))
    tags: Mapped[list[str]] = mapped_column(ARRAY(String(50)), default=list, server_default="{}")
    owner_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("user.id", ondelete="SET NULL"))
    custom_fields: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    notes: Mapped[str | None] = mapped_column(Text)
    search_vector: Mapped[str | None] = mapped_column(
        TSVECTOR,
        Computed(
            "to_tsvector('russian', coalesce(full_name, '') || ' ' || coalesce(email, '') || ' ' "
            "|| coalesce(phone, '') || ' ' || coalesce(job_title, ''))",
            persisted=True,
        ),
    )
