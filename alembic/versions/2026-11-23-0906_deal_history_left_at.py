"""deal history left at

Revision ID: 0afcba914d5b
Revises: 5b82551766fd
Create Date: 2026-11-23 09:06:32.259313+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0afcba914d5b"
down_revision: str | None = "5b82551766fd"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Each existing stage row is left when the deal's next stage row was written (same order as the
#: funnel used to compute it: by time, then id).
BACKFILL = """
UPDATE deal_history AS h SET left_at = n.left_at
FROM (
    SELECT id, lead(created_at) OVER (PARTITION BY deal_id ORDER BY created_at, id) AS left_at
    FROM deal_history
    WHERE field = 'stage'
) AS n
WHERE h.id = n.id AND n.left_at IS NOT NULL
"""


def upgrade() -> None:
    op.add_column("deal_history", sa.Column("left_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(BACKFILL)


def downgrade() -> None:
    op.drop_column("deal_history", "left_at")
