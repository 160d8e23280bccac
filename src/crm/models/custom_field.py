from __future__ import annotations

from sqlalchemy import String, UniqueConstraint
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from crm.core.models import Base, IdMixin, TenantMixin, TimestampMixin


class CustomField(IdMixin, TenantMixin, TimestampMixin, Base):
    """A definition of an extra field on contacts, companies, deals or projects."""

    __tablename__ = "custom_field"
    __table_args__ = (UniqueConstraint("organization_id", "entity", "key"),)

    entity: Mapped[str] = mapped_column(String(20))
    key: Mapped[str] = mapped_column(String(50))
    label: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(20))
    options: Mapped[list[str]] = mapped_column(ARRAY(String(200)), default=list, server_default="{}")
    required: Mapped[bool] = mapped_column(default=False, server_default="false")
