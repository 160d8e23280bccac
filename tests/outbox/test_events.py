"""How writes become events, subscription patterns, and the bulk jobs' summary events."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.integrations.engine import SYNC_FINISHED_HOOKS
from crm.models import Integration, OutboxEvent, SyncJob
from crm.outbox.events import matches, record_events, valid_pattern
from crm.outbox.hooks import sync_finished_event
from tests.factories import make_org


class TestRecordEvents:
    @pytest.mark.parametrize(
        ("entity", "action", "changes", "expected"),
        [
            ("contact", "created", {}, ["contact.created"]),
            ("company", "restored", {}, ["company.restored"]),
            ("deal", "status_changed", {"status": ["new", "won"]}, ["deal.won"]),
            ("deal", "status_changed", {"status": ["won", "lost"]}, ["deal.lost"]),
            ("deal", "status_changed", {"status": ["won", "in_progress"]}, ["deal.updated"]),
            (
                "deal",
                "stage_changed",
                {"stage": ["a", "b"], "status": ["new", "won"]},
                ["deal.stage_changed", "deal.won"],
            ),
            ("deal", "updated", {"title": ["a", "b"]}, ["deal.updated"]),
            ("task", "created", {"assignee_id": [None, 5]}, ["task.created", "task.assigned"]),
            ("task", "updated", {"status": ["open", "done"]}, ["task.updated", "task.completed"]),
            ("task", "updated", {"assignee_id": [5, None]}, ["task.updated"]),
            ("project", "status_changed", {"status": ["a", "b"]}, ["project.status_changed"]),
            ("pipeline", "created", {}, []),
        ],
    )
    def test_mapping(
        self, entity: str, action: str, changes: dict[str, list[object]], expected: list[str]
    ) -> None:
        assert record_events(entity, action, changes) == expected


class TestPatterns:
    def test_valid(self) -> None:
        assert all(valid_pattern(p) for p in ("*", "deal.*", "deal.won", "sync.failed", "alert.raised"))
        assert not any(valid_pattern(p) for p in ("deal", "deal.exploded", "nothing.*", "*.created", ""))

    def test_matches(self) -> None:
        assert matches(["deal.*"], "deal.won")
        assert matches(["*"], "task.assigned")
        assert matches(["task.assigned", "contact.created"], "contact.created")
        assert not matches(["deal.*"], "contact.created")
        assert not matches(["deal.won"], "deal.lost")


class TestSyncSummary:
    async def test_one_event_per_finished_job(self, db: AsyncSession) -> None:
        assert sync_finished_event in SYNC_FINISHED_HOOKS
        org = await make_org(db)
        integration = Integration(
            organization_id=org.id,
            provider="moysklad",
            name="Shop",
            credentials_encrypted=b"x",
            webhook_secret="s",
        )
        db.add(integration)
        await db.flush()
        for status in ("succeeded", "failed", "cancelled"):
            job = SyncJob(
                organization_id=org.id,
                integration_id=integration.id,
                status=status,
                counts={"products": {"created": 3}},
                finished_at=datetime.now(UTC),
            )
            db.add(job)
            await db.flush()
            await sync_finished_event(db, job)
        await db.flush()
        rows = (await db.scalars(select(OutboxEvent).where(OutboxEvent.organization_id == org.id))).all()
        assert [r.event_type for r in rows] == ["sync.succeeded", "sync.failed"]
        assert rows[0].payload["counts"] == {"products": {"created": 3}}
        assert rows[0].entity_type == "sync"
