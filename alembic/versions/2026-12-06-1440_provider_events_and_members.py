"""inbound provider events remembered for de-duplication; members linked to a directory; admin-set
minimum stock kept by syncs

Revision ID: b24e01
Revises: h10s1
Create Date: 2026-12-06 14:40:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b24e01"
down_revision: str | None = "h10s1"
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
    op.add_column("membership", sa.Column("source", sa.String(length=20), nullable=True))
    op.add_column("membership", sa.Column("external_id", sa.String(length=100), nullable=True))
    op.create_index(
        "uq_membership_org_source_external_id",
        "membership",
        ["organization_id", "source", "external_id"],
        unique=True,
        postgresql_where=sa.text("external_id IS NOT NULL"),
    )
    op.add_column(
        "product", sa.Column("min_stock_manual", sa.Boolean(), server_default=sa.text("false"), nullable=False)
    )


def downgrade() -> None:
    op.drop_column("product", "min_stock_manual")
    op.drop_index("uq_membership_org_source_external_id", table_name="membership")
    op.drop_column("membership", "external_id")
    op.drop_column("membership", "source")
    op.drop_index("ix_webhook_event_created", table_name="webhook_event")
    op.drop_table("webhook_event")
