from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, LargeBinary, String, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from crm.core.models import Base, IdMixin, utcnow


class IdempotencyKey(IdMixin, Base):
    """The first response to a create with an `Idempotency-Key`, kept for 24 h.

    `scope` is (principal, organization, method, path); the row is written in the same transaction
    as the record it created, so a concurrent repeat waits on the unique index and then replays.
    """

    __tablename__ = "idempotency_key"
    __table_args__ = (UniqueConstraint("scope", "key"), Index("ix_idempotency_key_expires_at", "expires_at"))

    scope: Mapped[str] = mapped_column(String(400))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None]
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    headers: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), default=utcnow)
    expires_at: Mapped[datetime]
