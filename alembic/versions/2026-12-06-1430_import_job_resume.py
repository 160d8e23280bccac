"""import jobs resume after a redelivery and are re-enqueued when their enqueue failed

`import_job.attempts` counts deliveries that started the job, `heartbeat_at` is when a queued job was
last handed to the broker or when a running job last showed life, `counts_by_type` keeps the per-entity
counts as of the last committed chunk (a redelivered job continues from there).

Revision ID: i10a01
Revises: p3f01
Create Date: 2026-12-06 14:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "i10a01"
down_revision: str | None = "p3f01"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("import_job", sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
    op.add_column("import_job", sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "import_job",
        sa.Column(
            "counts_by_type", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False
        ),
    )
    op.create_index(
        "ix_import_job_active",
        "import_job",
        ["status", "heartbeat_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_import_job_active",
        table_name="import_job",
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )
    op.drop_column("import_job", "counts_by_type")
    op.drop_column("import_job", "heartbeat_at")
    op.drop_column("import_job", "attempts")
