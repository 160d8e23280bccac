"""refresh tokens handed out per session (a second tab may spend one within a grace period)

Every refresh token handed out is a row; spending it stamps `spent_at`. The live refresh token of each
current session is copied from `user_session.refresh_jti`.

Revision ID: h10s1
Revises: j7q01
Create Date: 2026-12-06 14:40:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "h10s1"
down_revision: str | None = "j7q01"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "refresh_token",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("session_id", sa.BigInteger(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("spent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["user_session.id"],
            name=op.f("fk_refresh_token_session_id_user_session"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_refresh_token")),
    )
    op.create_index(op.f("ix_refresh_token_session_id"), "refresh_token", ["session_id"], unique=False)
    op.execute(
        """
        INSERT INTO refresh_token (jti, session_id, issued_at)
        SELECT refresh_jti, id, last_used_at FROM user_session
        WHERE revoked_at IS NULL AND expires_at > now()
        ON CONFLICT DO NOTHING
        """
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_refresh_token_session_id"), table_name="refresh_token")
    op.drop_table("refresh_token")
