"""support measures

Revision ID: p4b01
Revises: b3aead834c6f
Create Date: 2026-11-23 10:02:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op

revision: str = "p4b01"
down_revision: str | None = "b3aead834c6f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


#: The rules of PROJECTS.md kept by the database too (the API answers 422 before reaching them).
CHECKS = {
    "unit_fits_type": "(type IN ('finance', 'credit') AND unit = 'RUB')"
    " OR (type IN ('equipment', 'technical') AND unit = 'pieces')"
    " OR (type = 'land' AND unit IN ('meters', 'square_meters', 'cubic_meters', 'hectares'))",
    "dates_in_order": "date_start IS NULL OR date_end IS NULL OR date_end >= date_start",
    "status": "status IN ('requested', 'approved', 'rejected', 'provided')",
}


def upgrade() -> None:
    for name, condition in CHECKS.items():
        op.create_check_constraint(op.f(f"ck_support_measure_{name}"), "support_measure", condition)


def downgrade() -> None:
    for name in reversed(list(CHECKS)):
        op.drop_constraint(op.f(f"ck_support_measure_{name}"), "support_measure", type_="check")
