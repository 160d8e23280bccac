"""Declarative base, naming convention and shared column mixins."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import BigInteger, DateTime, ForeignKey, Identity, MetaData, String, func
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
