"""projects status

Revision ID: p4a01
Revises: b3aead834c6f
Create Date: 2026-11-23 10:01:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision: str = "p4a01"
down_revision: str | None = "b3aead834c6f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
