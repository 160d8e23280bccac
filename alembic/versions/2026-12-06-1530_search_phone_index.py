"""contact phones searchable as typed: a trigram index on the stored E.164 digits

Revision ID: h14s01
Revises: ev12a
Create Date: 2026-12-06 15:30:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "h14s01"
down_revision: str | None = "ev12a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_contact_phone_trgm",
        "contact",
        ["phone"],
        postgresql_using="gin",
        postgresql_ops={"phone": "gin_trgm_ops"},
    )


def downgrade() -> None:
    op.drop_index("ix_contact_phone_trgm", table_name="contact")
