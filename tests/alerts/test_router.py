"""Alerts (SPEC §12): low stock and failed syncs raised by the sync engine's finish hooks, listed and
acknowledged by admins through `/api/v1/alerts`."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.alerts import service as alerts_service
from crm.alerts.hooks import HOOKS, low_stock_hook, sync_failed_hook
from crm.integrations.engine import SYNC_FINISHED_HOOKS
from crm.models import (
    Activity,
    Alert,
    Integration,
    Notification,
    Organization,
    OutboxEvent,
    StockLevel,
    SyncJob,
)
from tests.factories import Factory, add_member, assert_problem, make_user
from tests.inventory.support import make_product, make_store, set_stock

ALERTS = "/api/v1/alerts"


async def make_job(db: AsyncSession, org_id: int, status: str, error: str | None = None) -> SyncJob:
    integration = Integration(
        organization_id=org_id,
        provider="moysklad",
        name="МойСклад",
        credentials_encrypted=b"x",
        webhook_secret="s",
    )
    db.add(integration)
    await db.flush()
    job = SyncJob(
        organization_id=org_id,
        integration_id=integration.id,
        status=status,
        error=error,
        finished_at=datetime.now(UTC),
    )
    db.add(job)
    await db.flush()
    return job


async def alerts_of(db: AsyncSession, org_id: int) -> list[Alert]:
    return list(await db.scalars(select(Alert).where(Alert.organization_id == org_id).order_by(Alert.id)))


async def notifications(db: AsyncSession, kind: str) -> list[Notification]:
    return list(
        await db.scalars(select(Notification).where(Notification.kind == kind).order_by(Notification.id))
    )


class TestRegistration:
    def test_hooks_are_registered_with_the_engine(self) -> None:
        assert all(hook in SYNC_FINISHED_HOOKS for hook in HOOKS)


class TestLowStock:
    async def test_raised_once_notified_once_and_resolved(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        org = owner.org_id
        admin = await make_user(db)
        manager = await make_user(db)
        inactive = await make_user(db, is_active=False)
        organization = await db.get(Organization, org)
        assert organization is not None
        await add_member(db, organization, admin, "admin")
        await add_member(db, organization, manager, "manager")
        await add_member(db, organization, inactive, "admin")
        store = await make_store(db, org, "Склад")
        low = await make_product(db, org, "Мало", min_stock=10)
        fine = await make_product(db, org, "Хватает", min_stock=2)
        await make_product(db, org, "Без минимума")
        await make_product(db, org, "Услуга", kind="service", min_stock=5)
        await make_product(db, org, "Архив", archived=True, min_stock=5)
        level = await set_stock(db, low, store, 3)
        await set_stock(db, fine, store, 2)
        job = await make_job(db, org, "succeeded")

        await low_stock_hook(db, job)
        await low_stock_hook(db, job)  # a second run (or a concurrent one) raises nothing new

        (alert,) = await alerts_of(db, org)
        assert alert.kind == "low_stock"
        assert alert.key == f"low_stock:product:{low.id}"
        assert (alert.entity_type, alert.entity_id) == ("product", low.id)
        assert alert.title == "Low stock: Мало"
        assert alert.message == "Stock 3 is below the minimum 10"
        assert alert.data == {"product_id": low.id, "stock": 3, "min_stock": 10}
        sent = await notifications(db, "low_stock")
        assert sorted(n.user_id for n in sent) == sorted([owner.user.id, admin.id])
        assert {(n.entity_type, n.entity_id, n.organization_id) for n in sent} == {("product", low.id, org)}

        level.stock = Decimal(10)
        await db.flush()
        await low_stock_hook(db, job)

        db.expunge_all()
        (resolved,) = await alerts_of(db, org)
        assert resolved.resolved_at is not None
        assert resolved.acknowledged_at is None
        assert len(await notifications(db, "low_stock")) == 2

        # Falling below again is a new alert (the resolved one stays in the history).
        await db.execute(StockLevel.__table__.update().where(StockLevel.id == level.id).values(stock=1))
        new_ids = await alerts_service.evaluate_low_stock(db, org)
        assert len(new_ids) == 1
        assert len(await alerts_of(db, org)) == 2

    async def test_an_acknowledged_alert_is_not_raised_again_while_stock_stays_low(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        store = await make_store(db, owner.org_id, "Склад")
        product = await make_product(db, owner.org_id, "Мало", min_stock=10)
        await set_stock(db, product, store, 1)
        (alert_id,) = await alerts_service.evaluate_low_stock(db, owner.org_id)

        acked = await client.post(f"{ALERTS}/{alert_id}/ack", headers=owner.headers)
        assert acked.status_code == 200, acked.text
        assert await alerts_service.evaluate_low_stock(db, owner.org_id) == []

        assert len(await alerts_of(db, owner.org_id)) == 1

    async def test_many_new_alerts_make_one_summary_notification(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        for n in range(alerts_service.MAX_NOTIFICATIONS_PER_RUN + 1):
            await make_product(db, owner.org_id, f"Товар {n}", min_stock=1)

        new = await alerts_service.evaluate_low_stock(db, owner.org_id)

        assert len(new) == alerts_service.MAX_NOTIFICATIONS_PER_RUN + 1
        (summary,) = await notifications(db, "low_stock")
        assert summary.title == "21 products are below their minimum stock"
        assert sorted(summary.data["alert_ids"]) == sorted(new)

    async def test_organizations_are_apart(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        other = await factory.actor("owner")
        await make_product(db, other.org_id, "Чужой", min_stock=5)

        assert await alerts_service.evaluate_low_stock(db, owner.org_id) == []
        assert await notifications(db, "low_stock") == []


class TestSyncFailed:
    async def test_a_failure_raises_one_alert_and_success_resolves_it(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        failed = await make_job(db, owner.org_id, "failed", error="401 from MoySklad")

        await sync_failed_hook(db, failed)
        again = SyncJob(
            organization_id=owner.org_id,
            integration_id=failed.integration_id,
            status="failed",
            error="timeout",
        )
        db.add(again)
        await db.flush()
        await sync_failed_hook(db, again)

        (alert,) = await alerts_of(db, owner.org_id)
        assert alert.kind == "sync_failed"
        assert alert.key == f"sync_failed:integration:{failed.integration_id}"
        assert alert.severity == "error"
        assert alert.title == "Sync failed: МойСклад"
        (sent,) = await notifications(db, "sync_failed")
        assert sent.user_id == owner.user.id
        assert sent.body == "401 from MoySklad"
        # One `alert.raised` event, written with the alert (not again for the second failure).
        await db.flush()
        (event,) = await db.scalars(select(OutboxEvent).where(OutboxEvent.event_type == "alert.raised"))
        assert event.organization_id == owner.org_id
        assert event.entity_type == "alert"
        assert event.entity_id == alert.id
        assert event.payload["kind"] == "sync_failed"
        assert event.payload["severity"] == "error"
        assert event.payload["title"] == "Sync failed: МойСклад"
        assert event.payload["entity_id"] == failed.integration_id
        db.expunge_all()
        (alert,) = await alerts_of(db, owner.org_id)
        assert alert.message == "timeout"
        assert alert.data == {"job_id": again.id, "integration_id": failed.integration_id}

        ok = SyncJob(organization_id=owner.org_id, integration_id=failed.integration_id, status="succeeded")
        db.add(ok)
        await db.flush()
        await sync_failed_hook(db, ok)

        db.expunge_all()
        (alert,) = await alerts_of(db, owner.org_id)
        assert alert.resolved_at is not None


class TestListAndAck:
    async def test_list_filters_and_ack(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        store = await make_store(db, admin.org_id, "Склад")
        a = await make_product(db, admin.org_id, "А", min_stock=5)
        b = await make_product(db, admin.org_id, "Б", min_stock=5)
        await set_stock(db, a, store, 1)
        await set_stock(db, b, store, 1)
        low_ids = await alerts_service.evaluate_low_stock(db, admin.org_id)
        job = await make_job(db, admin.org_id, "failed", error="boom")
        sync_id = await alerts_service.raise_sync_failed_alert(db, job)
        other = await factory.actor("owner")
        await make_product(db, other.org_id, "Чужой", min_stock=1)
        (foreign_id,) = await alerts_service.evaluate_low_stock(db, other.org_id)

        every = (await client.get(ALERTS, headers=admin.headers)).json()
        assert every["total"] == 3
        assert every["items"][0]["id"] == sync_id  # newest first
        low = (await client.get(ALERTS, params={"kind": "low_stock"}, headers=admin.headers)).json()
        assert sorted(i["id"] for i in low["items"]) == sorted(low_ids)
        assert {i["status"] for i in low["items"]} == {"open"}

        response = await client.post(f"{ALERTS}/{low_ids[0]}/ack", headers=admin.headers)

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "acknowledged"
        assert body["acknowledged_by_id"] == admin.user.id
        assert body["acknowledged_at"].endswith("Z")
        first_ack = body["acknowledged_at"]
        repeat = await client.post(f"{ALERTS}/{low_ids[0]}/ack", headers=admin.headers)
        assert repeat.json()["acknowledged_at"] == first_ack
        acked = (await client.get(ALERTS, params={"status": "acknowledged"}, headers=admin.headers)).json()
        assert [i["id"] for i in acked["items"]] == [low_ids[0]]
        still_open = (await client.get(ALERTS, params={"status": "open"}, headers=admin.headers)).json()
        assert sorted(i["id"] for i in still_open["items"]) == sorted([low_ids[1], sync_id])
        assert (await client.get(ALERTS, params={"status": "resolved"}, headers=admin.headers)).json()[
            "total"
        ] == 0
        activities = await db.scalar(
            select(func.count()).where(Activity.entity_type == "alert", Activity.action == "acknowledged")
        )
        assert activities == 1
        # Another organization's alert: 404 on ack, invisible in lists.
        assert_problem(
            await client.post(f"{ALERTS}/{foreign_id}/ack", headers=admin.headers), 404, "not_found"
        )
        foreign = await db.get(Alert, foreign_id)
        assert foreign is not None
        assert foreign.acknowledged_at is None

    async def test_members_and_managers_get_403(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        for role in ("member", "manager"):
            actor = await factory.actor(role)
            assert_problem(await client.get(ALERTS, headers=actor.headers), 403, "permission_denied")
            assert_problem(
                await client.post(f"{ALERTS}/1/ack", headers=actor.headers), 403, "permission_denied"
            )

    async def test_bad_filters_and_unknown_ids(self, client: AsyncClient, factory: Factory) -> None:
        admin = await factory.actor("admin")
        for params in ({"kind": "fire"}, {"status": "closed"}, {"limit": "0"}):
            assert_problem(
                await client.get(ALERTS, params=params, headers=admin.headers), 422, "validation_error"
            )
        assert_problem(await client.post(f"{ALERTS}/999999999/ack", headers=admin.headers), 404, "not_found")
