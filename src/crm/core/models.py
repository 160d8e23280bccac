"""Declarative base, naming convention, shared column mixins and the indexes tables declare alike."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import BigInteger, DateTime, ForeignKey, Identity, Index, MetaData, String, func, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: DateTime(timezone=True)}


class IdMixin:
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), default=utcnow, onupdate=utcnow)


class TenantMixin:
    """Rows owned by an organization; every query on them filters by `organization_id`.

    Each table declares its own index leading with `organization_id` (composite, to fit its queries).
    """

    organization_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("organization.id", ondelete="CASCADE")
    )


class VersionMixin:
    """Optimistic concurrency: bumped on every write; exposed as the ETag."""

    version: Mapped[int] = mapped_column(default=1, server_default="1")


class SoftDeleteMixin:
    deleted_at: Mapped[datetime | None]


class SourceMixin:
    """Where a record came from; synced records keep the provider's id and any warnings."""

    source: Mapped[str] = mapped_column(String(20), default="manual", server_default="manual")
    external_id: Mapped[str | None] = mapped_column(String(100))
    sync_warnings: Mapped[list[str]] = mapped_column(ARRAY(String(50)), default=list, server_default="{}")


class RecordMixin(IdMixin, TenantMixin, TimestampMixin, VersionMixin, SoftDeleteMixin, SourceMixin):
    """A CRM record (contact, company, deal): tenant-owned, timestamped, versioned, soft-deleted and
    possibly synced from a provider."""


# Indexes that several tables declare alike, named after their table.


def newest_first_index(table: str) -> Index:
    """An organization's rows newest first: the default order of its lists."""
    return Index(f"ix_{table}_org_created", "organization_id", text("created_at DESC"), text("id DESC"))


def synced_key_index(table: str) -> Index:
    """At most one row per provider's id (`source`, `external_id`) in an organization."""
    return Index(
        f"uq_{table}_org_source_external_id",
        "organization_id",
        "source",
        "external_id",
        unique=True,
        postgresql_where=text("external_id IS NOT NULL"),
    )


def search_index(table: str) -> Index:
    """Full-text search over the row's generated `search_vector`."""
    return Index(f"ix_{table}_search", "search_vector", postgresql_using="gin")


def trigram_index(table: str, column: str, label: str | None = None) -> Index:
    """Substring and typo-tolerant matching on `column` (`ix_<table>_<label>_trgm`)."""
    return Index(
        f"ix_{table}_{label or column}_trgm",
        column,
        postgresql_using="gin",
        postgresql_ops={column: "gin_trgm_ops"},
    )


def custom_fields_index(table: str) -> Index:
    """`cf.<key>=value` filters: containment lookups in the `custom_fields` JSONB."""
    return Index(
        f"ix_{table}_custom_fields",
        "custom_fields",
        postgresql_using="gin",
        postgresql_ops={"custom_fields": "jsonb_path_ops"},
    )


def name_search_indexes(table: str, column: str, label: str | None = None) -> tuple[Index, Index]:
    """What the search of a named row uses: full text and trigram matching on its name."""
    return search_index(table), trigram_index(table, column, label)


def record_indexes(table: str, name_column: str, label: str | None = None) -> tuple[Index, ...]:
    """The indexes every CRM record (`RecordMixin`) has besides its own: the provider's id, the list
    order, search on its name and `cf.<key>` filters."""
    return (
        synced_key_index(table),
        newest_first_index(table),
        *name_search_indexes(table, name_column, label),
        custom_fields_index(table),
    )
