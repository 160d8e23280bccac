"""funnel index on stage stays

Revision ID: 4b1bc5496c3a
Revises: 450d83093dcc
Create Date: 2026-11-23 08:18:15.650480+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "4b1bc5496c3a"
down_revision: str | None = "450d83093dcc"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_deal_history_stage_stays",
        "deal_history",
        ["organization_id", "pipeline_id", "deal_id", "created_at", "id"],
        unique=False,
        postgresql_include=["to_value"],
        postgresql_where=sa.text("field = 'stage'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_deal_history_stage_stays",
        table_name="deal_history",
        postgresql_include=["to_value"],
        postgresql_where=sa.text("field = 'stage'"),
    )
