from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Computed, ForeignKey, Index, String, Text, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from crm.core.models import Base, RecordMixin, record_indexes

UNIQUE_SOURCES = "source IN ('manual', 'registration', 'import')"


class Company(RecordMixin, Base):
    __tablename__ = "company"
    __table_args__ = (
        Index(
            "uq_company_org_inn_live",
            "organization_id",
            "inn",
            unique=True,
            postgresql_where=text(f"deleted_at IS NULL AND inn IS NOT NULL AND {UNIQUE_SOURCES}"),
        ),
        *record_indexes("company", "name"),
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
