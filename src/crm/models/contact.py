from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Computed, ForeignKey, Index, SmallInteger, String, Text, func, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from crm.core.models import Base, RecordMixin, record_indexes, trigram_index
from crm.models.company import UNIQUE_SOURCES


class Contact(RecordMixin, Base):
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
        *record_indexes("contact", "full_name", "name"),
        Index("ix_contact_company_id", "company_id"),
        # Phones typed in any format are searched by their digits within the stored E.164 (§20.13).
        trigram_index("contact", "phone"),
        Index("ix_contact_tags", "tags", postgresql_using="gin"),
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
