from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, LargeBinary, String, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from crm.core.models import Base, IdMixin, TenantMixin, utcnow


class ImportJob(IdMixin, TenantMixin, Base):
    """A CSV/XLSX import run by a worker; counts and per-row errors as SPEC §18 jobs."""

    __tablename__ = "import_job"
    __table_args__ = (
        Index("ix_import_job_org_created", "organization_id", text("created_at DESC")),
        # The requeue and reaper passes look for active jobs only.
        Index(
            "ix_import_job_active",
            "status",
            "heartbeat_at",
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
    )

    user_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("user.id", ondelete="SET NULL"))
    entity: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="queued", server_default="queued")
    file_name: Mapped[str | None] = mapped_column(String(300))
    file_format: Mapped[str] = mapped_column(String(10))
    mapping: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    on_conflict: Mapped[str] = mapped_column(String(10), default="update", server_default="update")
    atomic: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    total_rows: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    processed_rows: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    updated: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    skipped: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    failed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list, server_default="[]")
    error: Mapped[str | None] = mapped_column(String(1000))
    #: Deliveries that started running the job (a redelivery after a dead worker adds one).
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: Queued: when the job was last handed to the broker; running: the worker's last sign of life.
    heartbeat_at: Mapped[datetime | None]
    #: `{"created": {entity_type: n}, "updated": {…}}` as of the last committed chunk (activities and
    #: a resumed run start from it).
    counts_by_type: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class ImportUpload(Base):
    """The uploaded file of an import job, kept in the database so any worker host can read it;
    dropped when the job finishes."""

    __tablename__ = "import_upload"

    job_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("import_job.id", ondelete="CASCADE"), primary_key=True
    )
    content: Mapped[bytes] = mapped_column(LargeBinary)
