"""crm core records

Revision ID: 961dc476bba7
Revises: e404f5ccb710
Create Date: 2026-11-23 07:28:55.839280+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "961dc476bba7"
down_revision: str | None = "e404f5ccb710"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_table(
        "idempotency_key",
        sa.Column("scope", sa.String(length=400), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_key")),
        sa.UniqueConstraint("scope", "key", name=op.f("uq_idempotency_key_scope_key")),
    )
    op.create_index("ix_idempotency_key_expires_at", "idempotency_key", ["expires_at"], unique=False)
    op.create_table(
        "activity",
        sa.Column("entity_type", sa.String(length=30), nullable=False),
        sa.Column("entity_id", sa.BigInteger(), nullable=True),
        sa.Column("action", sa.String(length=30), nullable=False),
        sa.Column("actor_id", sa.BigInteger(), nullable=True),
        sa.Column("changes", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("organization_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["user.id"], name=op.f("fk_activity_actor_id_user"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_activity_organization_id_organization"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activity")),
    )
    op.create_index(
        "ix_activity_entity",
        "activity",
        ["organization_id", "entity_type", "entity_id", sa.literal_column("id DESC")],
        unique=False,
    )
    op.create_index(
        "ix_activity_org_created",
        "activity",
        ["organization_id", sa.literal_column("created_at DESC"), sa.literal_column("id DESC")],
        unique=False,
    )
    op.create_table(
        "company",
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=20), server_default="legal_entity", nullable=False),
        sa.Column("inn", sa.String(length=12), nullable=True),
        sa.Column("kpp", sa.String(length=9), nullable=True),
        sa.Column("ogrn", sa.String(length=15), nullable=True),
        sa.Column("website", sa.String(length=300), nullable=True),
        sa.Column("industry", sa.String(length=200), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("address", sa.String(length=500), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("tags", postgresql.ARRAY(sa.String(length=50)), server_default="{}", nullable=False),
        sa.Column("owner_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "custom_fields", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False
        ),
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            sa.Computed(
                "to_tsvector('russian', coalesce(name, '') || ' ' || coalesce(inn, '') || ' ' || coalesce(email, '') || ' ' || coalesce(industry, ''))",
                persisted=True,
            ),
            nullable=True,
        ),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("organization_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.String(length=20), server_default="manual", nullable=False),
        sa.Column("external_id", sa.String(length=100), nullable=True),
        sa.Column(
            "sync_warnings", postgresql.ARRAY(sa.String(length=50)), server_default="{}", nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_company_organization_id_organization"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["user.id"], name=op.f("fk_company_owner_id_user"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_company")),
    )
    op.create_index(
        "ix_company_custom_fields",
        "company",
        ["custom_fields"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"custom_fields": "jsonb_path_ops"},
    )
    op.create_index(
        "ix_company_name_trgm",
        "company",
        ["name"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"name": "gin_trgm_ops"},
    )
    op.create_index(
        "ix_company_org_created",
        "company",
        ["organization_id", sa.literal_column("created_at DESC"), sa.literal_column("id DESC")],
        unique=False,
    )
    op.create_index("ix_company_search", "company", ["search_vector"], unique=False, postgresql_using="gin")
    op.create_index(
        "uq_company_org_inn_live",
        "company",
        ["organization_id", "inn"],
        unique=True,
        postgresql_where=sa.text(
            "deleted_at IS NULL AND inn IS NOT NULL AND source IN ('manual', 'registration', 'import')"
        ),
    )
    op.create_index(
        "uq_company_org_source_external_id",
        "company",
        ["organization_id", "source", "external_id"],
        unique=True,
        postgresql_where=sa.text("external_id IS NOT NULL"),
    )
    op.create_table(
        "custom_field",
        sa.Column("entity", sa.String(length=20), nullable=False),
        sa.Column("key", sa.String(length=50), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("options", postgresql.ARRAY(sa.String(length=200)), server_default="{}", nullable=False),
        sa.Column("required", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("organization_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_custom_field_organization_id_organization"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_custom_field")),
        sa.UniqueConstraint(
            "organization_id", "entity", "key", name=op.f("uq_custom_field_organization_id_entity_key")
        ),
    )
    op.create_table(
        "pipeline",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("is_default", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("organization_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_pipeline_organization_id_organization"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pipeline")),
    )
    op.create_index("ix_pipeline_organization_id", "pipeline", ["organization_id"], unique=False)
    op.create_index(
        "uq_pipeline_org_default",
        "pipeline",
        ["organization_id"],
        unique=True,
        postgresql_where=sa.text("is_default"),
    )
    op.create_table(
        "contact",
        sa.Column("full_name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("phone_raw", sa.String(length=64), nullable=True),
        sa.Column("company_id", sa.BigInteger(), nullable=True),
        sa.Column("job_title", sa.String(length=200), nullable=True),
        sa.Column("age", sa.SmallInteger(), nullable=True),
        sa.Column("gender", sa.String(length=20), nullable=True),
        sa.Column("country", sa.String(length=100), nullable=True),
        sa.Column("address", sa.String(length=500), nullable=True),
        sa.Column("tags", postgresql.ARRAY(sa.String(length=50)), server_default="{}", nullable=False),
        sa.Column("owner_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "custom_fields", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False
        ),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            sa.Computed(
                "to_tsvector('russian', coalesce(full_name, '') || ' ' || coalesce(email, '') || ' ' || coalesce(phone, '') || ' ' || coalesce(job_title, ''))",
                persisted=True,
            ),
            nullable=True,
        ),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("organization_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.String(length=20), server_default="manual", nullable=False),
        sa.Column("external_id", sa.String(length=100), nullable=True),
        sa.Column(
            "sync_warnings", postgresql.ARRAY(sa.String(length=50)), server_default="{}", nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["company_id"], ["company.id"], name=op.f("fk_contact_company_id_company"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_contact_organization_id_organization"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["user.id"], name=op.f("fk_contact_owner_id_user"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact")),
    )
    op.create_index("ix_contact_company_id", "contact", ["company_id"], unique=False)
    op.create_index(
        "ix_contact_custom_fields",
        "contact",
        ["custom_fields"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"custom_fields": "jsonb_path_ops"},
    )
    op.create_index(
        "ix_contact_name_trgm",
        "contact",
        ["full_name"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"full_name": "gin_trgm_ops"},
    )
    op.create_index(
        "ix_contact_org_created",
        "contact",
        ["organization_id", sa.literal_column("created_at DESC"), sa.literal_column("id DESC")],
        unique=False,
    )
    op.create_index("ix_contact_search", "contact", ["search_vector"], unique=False, postgresql_using="gin")
    op.create_index("ix_contact_tags", "contact", ["tags"], unique=False, postgresql_using="gin")
    op.create_index(
        "uq_contact_org_email_live",
        "contact",
        ["organization_id", sa.literal_column("lower(email)")],
        unique=True,
        postgresql_where=sa.text(
            "deleted_at IS NULL AND email IS NOT NULL AND source IN ('manual', 'registration', 'import')"
        ),
    )
    op.create_index(
        "uq_contact_org_source_external_id",
        "contact",
        ["organization_id", "source", "external_id"],
        unique=True,
        postgresql_where=sa.text("external_id IS NOT NULL"),
    )
    op.create_table(
        "pipeline_stage",
        sa.Column("pipeline_id", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.String(length=50), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("is_archived", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("organization_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_pipeline_stage_organization_id_organization"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["pipeline_id"],
            ["pipeline.id"],
            name=op.f("fk_pipeline_stage_pipeline_id_pipeline"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pipeline_stage")),
        sa.UniqueConstraint("pipeline_id", "key", name=op.f("uq_pipeline_stage_pipeline_id_key")),
    )
    op.create_index("ix_pipeline_stage_org", "pipeline_stage", ["organization_id"], unique=False)
    op.create_table(
        "deal",
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("amount", sa.Numeric(precision=18, scale=2), server_default="0", nullable=False),
        sa.Column("currency", sa.String(length=3), server_default="RUB", nullable=False),
        sa.Column("contact_id", sa.BigInteger(), nullable=True),
        sa.Column("company_id", sa.BigInteger(), nullable=True),
        sa.Column("owner_id", sa.BigInteger(), nullable=True),
        sa.Column("pipeline_id", sa.BigInteger(), nullable=False),
        sa.Column("stage", sa.String(length=50), nullable=False),
        sa.Column("status", sa.String(length=20), server_default="new", nullable=False),
        sa.Column("expected_close_date", sa.Date(), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lost_reason", sa.Text(), nullable=True),
        sa.Column(
            "custom_fields", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False
        ),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            sa.Computed(
                "to_tsvector('russian', coalesce(title, '') || ' ' || coalesce(notes, ''))", persisted=True
            ),
            nullable=True,
        ),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("organization_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.String(length=20), server_default="manual", nullable=False),
        sa.Column("external_id", sa.String(length=100), nullable=True),
        sa.Column(
            "sync_warnings", postgresql.ARRAY(sa.String(length=50)), server_default="{}", nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["company_id"], ["company.id"], name=op.f("fk_deal_company_id_company"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contact.id"], name=op.f("fk_deal_contact_id_contact"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_deal_organization_id_organization"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["user.id"], name=op.f("fk_deal_owner_id_user"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["pipeline_id"], ["pipeline.id"], name=op.f("fk_deal_pipeline_id_pipeline"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deal")),
    )
    op.create_index("ix_deal_company_id", "deal", ["company_id"], unique=False)
    op.create_index("ix_deal_contact_id", "deal", ["contact_id"], unique=False)
    op.create_index(
        "ix_deal_custom_fields",
        "deal",
        ["custom_fields"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"custom_fields": "jsonb_path_ops"},
    )
    op.create_index(
        "ix_deal_org_created",
        "deal",
        ["organization_id", sa.literal_column("created_at DESC"), sa.literal_column("id DESC")],
        unique=False,
    )
    op.create_index(
        "ix_deal_pipeline_stage", "deal", ["organization_id", "pipeline_id", "stage"], unique=False
    )
    op.create_index("ix_deal_search", "deal", ["search_vector"], unique=False, postgresql_using="gin")
    op.create_index(
        "ix_deal_title_trgm",
        "deal",
        ["title"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"title": "gin_trgm_ops"},
    )
    op.create_index(
        "uq_deal_org_source_external_id",
        "deal",
        ["organization_id", "source", "external_id"],
        unique=True,
        postgresql_where=sa.text("external_id IS NOT NULL"),
    )
    op.create_table(
        "deal_history",
        sa.Column("deal_id", sa.BigInteger(), nullable=False),
        sa.Column("pipeline_id", sa.BigInteger(), nullable=False),
        sa.Column("field", sa.String(length=10), nullable=False),
        sa.Column("from_value", sa.String(length=50), nullable=True),
        sa.Column("to_value", sa.String(length=50), nullable=False),
        sa.Column("actor_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("organization_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["user.id"], name=op.f("fk_deal_history_actor_id_user"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["deal_id"], ["deal.id"], name=op.f("fk_deal_history_deal_id_deal"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_deal_history_organization_id_organization"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deal_history")),
    )
    op.create_index("ix_deal_history_deal", "deal_history", ["deal_id", "created_at"], unique=False)
    op.create_index(
        "ix_deal_history_org_pipeline",
        "deal_history",
        ["organization_id", "pipeline_id", "field"],
        unique=False,
    )
    op.create_table(
        "task",
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("deal_id", sa.BigInteger(), nullable=True),
        sa.Column("contact_id", sa.BigInteger(), nullable=True),
        sa.Column("project_id", sa.BigInteger(), nullable=True),
        sa.Column("assignee_id", sa.BigInteger(), nullable=True),
        sa.Column("created_by_id", sa.BigInteger(), nullable=True),
        sa.Column("due_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("priority", sa.String(length=10), server_default="normal", nullable=False),
        sa.Column("status", sa.String(length=20), server_default="open", nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("organization_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.ForeignKeyConstraint(
            ["assignee_id"], ["user.id"], name=op.f("fk_task_assignee_id_user"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contact.id"], name=op.f("fk_task_contact_id_contact"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["user.id"], name=op.f("fk_task_created_by_id_user"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["deal_id"], ["deal.id"], name=op.f("fk_task_deal_id_deal"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_task_organization_id_organization"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task")),
    )
    op.create_index(
        "ix_task_assignee_status", "task", ["organization_id", "assignee_id", "status"], unique=False
    )
    op.create_index("ix_task_contact_id", "task", ["contact_id"], unique=False)
    op.create_index("ix_task_deal_id", "task", ["deal_id"], unique=False)
    op.create_index(
        "ix_task_org_created",
        "task",
        ["organization_id", sa.literal_column("created_at DESC"), sa.literal_column("id DESC")],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_task_org_created", table_name="task")
    op.drop_index("ix_task_deal_id", table_name="task")
    op.drop_index("ix_task_contact_id", table_name="task")
    op.drop_index("ix_task_assignee_status", table_name="task")
    op.drop_table("task")
    op.drop_index("ix_deal_history_org_pipeline", table_name="deal_history")
    op.drop_index("ix_deal_history_deal", table_name="deal_history")
    op.drop_table("deal_history")
    op.drop_index(
        "uq_deal_org_source_external_id",
        table_name="deal",
        postgresql_where=sa.text("external_id IS NOT NULL"),
    )
    op.drop_index(
        "ix_deal_title_trgm",
        table_name="deal",
        postgresql_using="gin",
        postgresql_ops={"title": "gin_trgm_ops"},
    )
    op.drop_index("ix_deal_search", table_name="deal", postgresql_using="gin")
    op.drop_index("ix_deal_pipeline_stage", table_name="deal")
    op.drop_index("ix_deal_org_created", table_name="deal")
    op.drop_index(
        "ix_deal_custom_fields",
        table_name="deal",
        postgresql_using="gin",
        postgresql_ops={"custom_fields": "jsonb_path_ops"},
    )
    op.drop_index("ix_deal_contact_id", table_name="deal")
    op.drop_index("ix_deal_company_id", table_name="deal")
    op.drop_table("deal")
    op.drop_index("ix_pipeline_stage_org", table_name="pipeline_stage")
    op.drop_table("pipeline_stage")
    op.drop_index(
        "uq_contact_org_source_external_id",
        table_name="contact",
        postgresql_where=sa.text("external_id IS NOT NULL"),
    )
    op.drop_index(
        "uq_contact_org_email_live",
        table_name="contact",
        postgresql_where=sa.text(
            "deleted_at IS NULL AND email IS NOT NULL AND source IN ('manual', 'registration', 'import')"
        ),
    )
    op.drop_index("ix_contact_tags", table_name="contact", postgresql_using="gin")
    op.drop_index("ix_contact_search", table_name="contact", postgresql_using="gin")
    op.drop_index("ix_contact_org_created", table_name="contact")
    op.drop_index(
        "ix_contact_name_trgm",
        table_name="contact",
        postgresql_using="gin",
        postgresql_ops={"full_name": "gin_trgm_ops"},
    )
    op.drop_index(
        "ix_contact_custom_fields",
        table_name="contact",
        postgresql_using="gin",
        postgresql_ops={"custom_fields": "jsonb_path_ops"},
    )
    op.drop_index("ix_contact_company_id", table_name="contact")
    op.drop_table("contact")
    op.drop_index("uq_pipeline_org_default", table_name="pipeline", postgresql_where=sa.text("is_default"))
    op.drop_index("ix_pipeline_organization_id", table_name="pipeline")
    op.drop_table("pipeline")
    op.drop_table("custom_field")
    op.drop_index(
        "uq_company_org_source_external_id",
        table_name="company",
        postgresql_where=sa.text("external_id IS NOT NULL"),
    )
    op.drop_index(
        "uq_company_org_inn_live",
        table_name="company",
        postgresql_where=sa.text(
            "deleted_at IS NULL AND inn IS NOT NULL AND source IN ('manual', 'registration', 'import')"
        ),
    )
    op.drop_index("ix_company_search", table_name="company", postgresql_using="gin")
    op.drop_index("ix_company_org_created", table_name="company")
    op.drop_index(
        "ix_company_name_trgm",
        table_name="company",
        postgresql_using="gin",
        postgresql_ops={"name": "gin_trgm_ops"},
    )
    op.drop_index(
        "ix_company_custom_fields",
        table_name="company",
        postgresql_using="gin",
        postgresql_ops={"custom_fields": "jsonb_path_ops"},
    )
    op.drop_table("company")
    op.drop_index("ix_activity_org_created", table_name="activity")
    op.drop_index("ix_activity_entity", table_name="activity")
    op.drop_table("activity")
    op.drop_index("ix_idempotency_key_expires_at", table_name="idempotency_key")
    op.drop_table("idempotency_key")
