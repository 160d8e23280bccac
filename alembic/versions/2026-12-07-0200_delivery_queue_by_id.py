"""webhook deliveries read as a queue in delivery-id order from where the sender left off

Revision ID: wq12a
Revises: h14s01
Create Date: 2026-12-07 02:00:00+00:00

The pending index is keyed by (webhook, delivery id), so a sender reads its next deliveries from
the last one it sent: the entries of the deliveries it already sent (dead until a vacuum) are
never walked again. Both queue tables are vacuumed sooner than the default (at 2 % of their rows
changed rather than 20 %).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "wq12a"
down_revision: str | None = "h14s01"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUEUES = ("webhook_delivery", "outbox_event")


def upgrade() -> None:
    op.drop_index("ix_webhook_delivery_pending", table_name="webhook_delivery")
    op.create_index(
        "ix_webhook_delivery_pending",
        "webhook_delivery",
        ["webhook_id", "id"],
        postgresql_where="status = 'pending'",
    )
    for table in QUEUES:
        op.execute(
            f"ALTER TABLE {table} SET (autovacuum_vacuum_scale_factor = 0.02,"
            " autovacuum_analyze_scale_factor = 0.02)"
        )


def downgrade() -> None:
    for table in QUEUES:
        op.execute(
            f"ALTER TABLE {table} RESET (autovacuum_vacuum_scale_factor, autovacuum_analyze_scale_factor)"
        )
    op.drop_index("ix_webhook_delivery_pending", table_name="webhook_delivery")
    op.create_index(
        "ix_webhook_delivery_pending",
        "webhook_delivery",
        ["webhook_id", "event_id"],
        postgresql_where="status = 'pending'",
    )
