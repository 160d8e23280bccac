"""sync jobs remember when their message was handed to the broker

`sync_job.enqueued_at` is NULL until a message for the job was accepted by the broker; the
`sync.requeue_queued` beat task sends queued jobs again whose send failed (broker away) or whose
message was lost. The partial index keeps that minute-by-minute look-up off the job history.

Revision ID: j7q01
Revises: i10a01
Create Date: 2026-12-06 14:35:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "j7q01"
down_revision: str | None = "i10a01"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("sync_job", sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True))
    # Jobs that exist already were sent (or are long finished).
    op.execute("UPDATE sync_job SET enqueued_at = created_at")
    op.create_index(
        "ix_sync_job_queued",
        "sync_job",
        ["created_at"],
        postgresql_where=sa.text("status = 'queued'"),
    )


def downgrade() -> None:
    op.drop_index("ix_sync_job_queued", table_name="sync_job")
    op.drop_column("sync_job", "enqueued_at")
