"""index deleted deals

Revision ID: 5b82551766fd
Revises: 4b1bc5496c3a
Create Date: 2026-11-23 09:02:02.385212+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "5b82551766fd"
down_revision: str | None = "4b1bc5496c3a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_deal_org_deleted",
        "deal",
        ["organization_id", "id"],
        unique=False,
        postgresql_where=sa.text("deleted_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_deal_org_deleted", table_name="deal", postgresql_where=sa.text("deleted_at IS NOT NULL")
    )
