from __future__ import annotations

from sqlalchemy import String, UniqueConstraint
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from crm.core.models import Base, IdMixin, TenantMixin, TimestampMixin, VersionMixin


class OrganizationRole(IdMixin, TenantMixin, TimestampMixin, VersionMixin, Base):
    """A custom role of one organization (§5): a name and the permissions it grants.

    Memberships name their role as text, so a membership's role is either one of the four built-in
    roles or the `name` of one of these rows. The unique constraint also serves tenant lookups."""

    __tablename__ = "organization_role"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    name: Mapped[str] = mapped_column(String(50))
    permissions: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
