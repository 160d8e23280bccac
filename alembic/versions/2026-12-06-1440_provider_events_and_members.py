"""inbound provider events remembered for de-duplication

Revision ID: b24e01
Revises: p3f01
Create Date: 2026-12-06 14:40:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b24e01"
down_revision: str | None = "p3f01"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_event",
        sa.Column("integration_id", sa.BigInteger(), nullable=False),
        sa.Column("event_key", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["integration_id"], ["integration.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("integration_id", "event_key"),
    )
    op.create_index("ix_webhook_event_created", "webhook_event", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_event_created", table_name="webhook_event")
    op.drop_table("webhook_event")
