"""funnel figures kept at write time

Each deal keeps the stages it ever entered (`deal.entered_stages`, maintained by a statement-level
trigger on `deal_history` inserts), completed stays carry their length (`stay_seconds`, generated) and
whether their deal is deleted (`deal_deleted`, maintained by triggers on `deal` updates and
`deal_history` inserts), so the funnel reads
two narrow indexes instead of scanning and grouping the stage history.

Revision ID: p3f01
Revises: p4b01
Create Date: 2026-11-23 10:07:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "p3f01"
down_revision: str | None = "p4b01"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENTERED_STAGES_FUNCTION = """
CREATE FUNCTION deal_history_entered_stages() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE deal AS d
    SET entered_stages = ARRAY(SELECT DISTINCT s FROM unnest(d.entered_stages || n.stages) AS s)
    FROM (
        SELECT deal_id, array_agg(DISTINCT to_value) AS stages
        FROM inserted WHERE field = 'stage' GROUP BY deal_id
    ) AS n
    WHERE d.id = n.deal_id AND NOT (d.entered_stages @> n.stages);
    -- History written for a deal that is already deleted (a deal restored later clears it).
    UPDATE deal_history AS h SET deal_deleted = true
    FROM inserted AS i JOIN deal AS d ON d.id = i.deal_id
    WHERE h.id = i.id AND d.deleted_at IS NOT NULL AND NOT h.deal_deleted;
    RETURN NULL;
END $$
"""
ENTERED_STAGES_TRIGGER = """
CREATE TRIGGER deal_history_entered_stages AFTER INSERT ON deal_history
REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION deal_history_entered_stages()
"""
DEAL_DELETED_FUNCTION = """
CREATE FUNCTION deal_mirror_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE deal_history SET deal_deleted = (NEW.deleted_at IS NOT NULL)
    WHERE deal_id = NEW.id AND deal_deleted IS DISTINCT FROM (NEW.deleted_at IS NOT NULL);
    RETURN NULL;
END $$
"""
DEAL_DELETED_TRIGGER = """
CREATE TRIGGER deal_mirror_deleted AFTER UPDATE OF deleted_at ON deal FOR EACH ROW
WHEN ((OLD.deleted_at IS NULL) IS DISTINCT FROM (NEW.deleted_at IS NULL))
EXECUTE FUNCTION deal_mirror_deleted()
"""


def upgrade() -> None:
    op.add_column(
        "deal",
        sa.Column(
            "entered_stages", postgresql.ARRAY(sa.String(length=50)), server_default="{}", nullable=False
        ),
    )
    op.add_column(
        "deal_history",
        sa.Column(
            "stay_seconds",
            sa.Double(),
            sa.Computed("date_part('epoch', left_at - created_at)", persisted=True),
            nullable=True,
        ),
    )
    op.add_column(
        "deal_history", sa.Column("deal_deleted", sa.Boolean(), server_default="false", nullable=False)
    )
    op.execute(
        """
        UPDATE deal AS d SET entered_stages = h.stages
        FROM (SELECT deal_id, array_agg(DISTINCT to_value) AS stages
              FROM deal_history WHERE field = 'stage' GROUP BY deal_id) AS h
        WHERE d.id = h.deal_id
        """
    )
    op.execute(
        "UPDATE deal_history AS h SET deal_deleted = true FROM deal AS d "
        "WHERE d.id = h.deal_id AND d.deleted_at IS NOT NULL"
    )
    op.execute(ENTERED_STAGES_FUNCTION)
    op.execute(ENTERED_STAGES_TRIGGER)
    op.execute(DEAL_DELETED_FUNCTION)
    op.execute(DEAL_DELETED_TRIGGER)
    op.drop_index(
        "ix_deal_history_stage_stays", table_name="deal_history", postgresql_where=sa.text("field = 'stage'")
    )
    op.create_index(
        "ix_deal_history_completed_stays",
        "deal_history",
        ["organization_id", "pipeline_id", "to_value", "stay_seconds"],
        unique=False,
        postgresql_where=sa.text("field = 'stage' AND stay_seconds IS NOT NULL AND NOT deal_deleted"),
    )
    op.create_index(
        "ix_deal_funnel",
        "deal",
        ["organization_id", "pipeline_id"],
        unique=False,
        postgresql_include=["stage", "amount", "currency", "created_at", "entered_stages"],
        postgresql_where=sa.text("deleted_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_deal_funnel", table_name="deal", postgresql_where=sa.text("deleted_at IS NULL"))
    op.drop_index("ix_deal_history_completed_stays", table_name="deal_history")
    op.create_index(
        "ix_deal_history_stage_stays",
        "deal_history",
        ["organization_id", "pipeline_id", "deal_id", "created_at", "id"],
        unique=False,
        postgresql_include=["to_value"],
        postgresql_where=sa.text("field = 'stage'"),
    )
    op.execute("DROP TRIGGER deal_mirror_deleted ON deal")
    op.execute("DROP FUNCTION deal_mirror_deleted()")
    op.execute("DROP TRIGGER deal_history_entered_stages ON deal_history")
    op.execute("DROP FUNCTION deal_history_entered_stages()")
    op.drop_column("deal_history", "deal_deleted")
    op.drop_column("deal_history", "stay_seconds")
    op.drop_column("deal", "entered_stages")
