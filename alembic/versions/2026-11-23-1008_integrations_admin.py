"""integrations admin

Revision ID: p5d01
Revises: p3f01
Create Date: 2026-11-23 10:08:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision: str = "p5d01"
down_revision: str | None = "p3f01"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
