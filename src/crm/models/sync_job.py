from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from crm.core.models import Base, IdMixin, TenantMixin, newest_first_index, utcnow


class SyncJob(IdMixin, TenantMixin, Base):
    """One sync run of an integration. At most one active (queued or running) job per integration,
    enforced by a partial unique index; `heartbeat_at` lets a reaper fail jobs whose worker died."""

    __tablename__ = "sync_job"
    __table_args__ = (
        newest_first_index("sync_job"),
        Index(
            "uq_sync_job_active_integration",
            "integration_id",
            unique=True,
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
        Index("ix_sync_job_queued", "created_at", postgresql_where=text("status = 'queued'")),
    )

    integration_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("integration.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20), default="queued", server_default="queued")
    trigger: Mapped[str] = mapped_column(String(20), default="manual", server_default="manual")
    entities: Mapped[list[str]] = mapped_column(ARRAY(String(50)), default=list, server_default="{}")
    full: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    #: {entity: {fetched, created, updated, unchanged, failed}}
    counts: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list, server_default="[]")
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    heartbeat_at: Mapped[datetime | None]
    #: When the broker accepted the job's latest message (NULL: never, e.g. the broker was away);
    #: for a job waiting to retry, when its retry message is due. See `sync.requeue_queued`.
    enqueued_at: Mapped[datetime | None]
    created_by_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("user.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class SyncCursor(Base):
    """Where the last committed page of an entity left off, per integration (opaque to the engine)."""

    __tablename__ = "sync_cursor"

    integration_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("integration.id", ondelete="CASCADE"), primary_key=True
    )
    entity: Mapped[str] = mapped_column(String(50), primary_key=True)
    organization_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("organization.id", ondelete="CASCADE")
    )
    cursor: Mapped[str | None] = mapped_column(Text)
    #: The job that wrote the cursor; a resumed job continues from a cursor its own attempt wrote.
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), default=utcnow, onupdate=utcnow)
