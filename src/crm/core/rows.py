"""What the record layer knows of a row, as typing protocols.

The models satisfy them through their mixins (`IdMixin`, `TenantMixin`, `VersionMixin`,
`TimestampMixin`, `SoftDeleteMixin`), so generic code (repositories, `RecordService`) is written
against them instead of `Base` and type-checks without ignores.

* `TenantRecord`, `VersionedRecord`: a record *type*, the bound of the generic classes. Their members
  are the mapped attributes (`ClassVar[Mapped[...]]`): on the class they are columns for statements
  (`model.organization_id == org`), on a row the values (`row.id` is an `int`).
* `Versioned`, `SoftDeletable`: a row being *written* (its version, update time, deletion time as
  plain attributes). A row of a `VersionedRecord` type is accepted where `Versioned` is expected;
  `soft_deletable` checks that a row's type has soft delete.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Protocol, runtime_checkable

from sqlalchemy import FromClause
from sqlalchemy.orm import Mapped


class TenantRecord(Protocol):
    """A row owned by one organization."""

    __table__: ClassVar[FromClause]
    id: ClassVar[Mapped[int]]
    organization_id: ClassVar[Mapped[int]]


class VersionedRecord(Protocol):
    """A tenant row with a version (the ETag) and an update time: every CRM record."""

    __table__: ClassVar[FromClause]
    id: ClassVar[Mapped[int]]
    organization_id: ClassVar[Mapped[int]]
    version: ClassVar[Mapped[int]]
    updated_at: ClassVar[Mapped[datetime]]


class Versioned(Protocol):
    """A record being written: its version is bumped and its update time set."""

    version: int
    updated_at: datetime


@runtime_checkable
class SoftDeletable(Protocol):
    """A record deleted by setting `deleted_at` (and restored by clearing it)."""

    version: int
    deleted_at: datetime | None


def soft_deletable(row: object) -> SoftDeletable:
    """The row as soft-deletable; TypeError for a record type without soft delete."""
    if not isinstance(row, SoftDeletable):
        raise TypeError(f"{type(row).__name__} rows are not soft-deleted")
    return row
