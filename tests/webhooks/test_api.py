"""`/webhooks`: subscriptions, signed deliveries in order, retries and disabling, redelivery, test
pings, SSRF refusals — against a real local receiver."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook as StandardWebhook

from crm.models import Notification, Organization, OutboxEvent, Webhook, WebhookDelivery
from crm.webhooks.delivery import deliver_pending
from tests.factories import Actor, Factory, add_member, assert_problem, make_user
from tests.fakes.webhook_receiver import Receiver
from tests.inventory.support import make_product, make_store, set_stock
from tests.webhooks.conftest import pump

URL = "/api/v1/webhooks"


async def create(
    client: AsyncClient, actor: Actor, url: str, events: list[str], **extra: Any
) -> dict[str, Any]:
    response = await client.post(URL, json={"url": url, "events": events, **extra}, headers=actor.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def verify(secret: str, received: Any) -> dict[str, Any]:
    """Checks the signature with the Standard Webhooks reference library; returns the payload."""
    return dict(StandardWebhook(secret).verify(received.body, received.headers))


async def count(db: AsyncSession, model: Any, *where: Any) -> int:
    return int(await db.scalar(select(func.count()).select_from(model).where(*where)) or 0)


class TestCrud:
    async def test_create_generates_a_secret_and_hides_it_afterwards(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        body = await create(client, admin, "https://example.com/hook", ["deal.*", "task.assigned"])
        assert body["secret"].startswith("whsec_")
        assert len(base64.b64decode(body["secret"][6:])) == 32
        assert body["events"] == ["deal.*", "task.assigned"]
        assert body["enabled"] is True
        stored = await db.get(Webhook, body["id"])
        assert stored is not None
        assert stored.secret == body["secret"]
        got = await client.get(f"{URL}/{body['id']}", headers=admin.headers)
        assert got.status_code == 200
        assert "secret" not in got.json()
        assert got.headers["etag"] == '"1"'
        listed = await client.get(URL, headers=admin.headers)
        assert listed.json()["total"] == 1

    async def test_given_secret_is_kept(self, client: AsyncClient, factory: Factory) -> None:
        admin = await factory.actor("admin")
        secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
        body = await create(client, admin, "https://example.com/hook", ["*"], secret=secret)
        assert body["secret"] == secret

    async def test_update_and_delete(self, client: AsyncClient, factory: Factory, db: AsyncSession) -> None:
        admin = await factory.actor("admin")
        body = await create(client, admin, "https://example.com/hook", ["deal.*"])
        patched = await client.patch(
            f"{URL}/{body['id']}",
            json={"events": ["contact.created"], "enabled": False},
            headers=admin.headers,
        )
        assert patched.status_code == 200, patched.text
        assert patched.json()["events"] == ["contact.created"]
        assert patched.json()["version"] == 2
        stale = await client.patch(
            f"{URL}/{body['id']}", json={"enabled": True}, headers={**admin.headers, "If-Match": '"1"'}
        )
        assert_problem(stale, 412, "version_mismatch")
        deleted = await client.delete(f"{URL}/{body['id']}", headers=admin.headers)
        assert deleted.status_code == 204
        db.expunge_all()
        assert await db.get(Webhook, body["id"]) is None

    async def test_another_organizations_webhook_is_not_found(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        admin = await factory.actor("admin")
        stranger = await factory.actor("admin")
        body = await create(client, admin, "https://example.com/hook", ["*"])
        for method, path in [
            ("GET", f"{URL}/{body['id']}"),
            ("PATCH", f"{URL}/{body['id']}"),
            ("DELETE", f"{URL}/{body['id']}"),
            ("GET", f"{URL}/{body['id']}/deliveries"),
            ("POST", f"{URL}/{body['id']}/test"),
        ]:
            response = await client.request(
                method, path, headers=stranger.headers, json={} if method == "PATCH" else None
            )
            assert_problem(response, 404, "not_found")

    async def test_managers_may_not_manage_webhooks(self, client: AsyncClient, factory: Factory) -> None:
        manager = await factory.actor("manager")
        response = await client.post(
            URL, json={"url": "https://example.com/h", "events": ["*"]}, headers=manager.headers
        )
        assert_problem(response, 403, "permission_denied")


class TestBadInput:
    @pytest.mark.parametrize(
        ("body", "fragment"),
        [
            ({"url": "https://example.com/h", "events": ["deal.exploded"]}, "unknown event"),
            ({"url": "https://example.com/h", "events": ["nothing.*"]}, "unknown event"),
            ({"url": "https://example.com/h", "events": []}, ""),
            ({"url": "ftp://example.com/h", "events": ["*"]}, "http"),
            ({"url": "http://169.254.169.254/latest", "events": ["*"]}, "link-local"),
            ({"url": "http://0.0.0.0:8000/", "events": ["*"]}, "unspecified"),
            ({"url": "https://example.com/h", "events": ["*"], "secret": "plain"}, "whsec_"),
        ],
    )
    async def test_refused_with_422_and_nothing_stored(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, body: dict[str, Any], fragment: str
    ) -> None:
        admin = await factory.actor("admin")
        response = await client.post(URL, json=body, headers=admin.headers)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert fragment in response.text
        assert await count(db, Webhook, Webhook.organization_id == admin.org_id) == 0

    async def test_private_addresses_refused_in_production_settings(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, override_settings: Any
    ) -> None:
        override_settings(allow_private_integration_urls=False)
        admin = await factory.actor("admin")
        for url in ("http://127.0.0.1:18610/hooks/x", "http://10.0.0.5/h", "http://[::1]/h"):
            response = await client.post(URL, json={"url": url, "events": ["*"]}, headers=admin.headers)
            assert_problem(response, 422, "url_not_allowed")
        assert await count(db, Webhook, Webhook.organization_id == admin.org_id) == 0


class TestDelivery:
    async def test_signed_ordered_exactly_once_with_filters(
        self,
        client: AsyncClient,
        factory: Factory,
        db: AsyncSession,
        receiver: Receiver,
        test_maker: async_sessionmaker[AsyncSession],
    ) -> None:
        admin = await factory.actor("admin")
        deals = await create(client, admin, receiver.url("deals"), ["deal.*"])
        contacts = await create(client, admin, receiver.url("contacts"), ["contact.created"])
        everything = await create(client, admin, receiver.url("all"), ["*"])
        h = admin.headers
        contact = (await client.post("/api/v1/contacts", json={"full_name": "Анна"}, headers=h)).json()
        await client.patch(f"/api/v1/contacts/{contact['id']}", json={"full_name": "Анна Б"}, headers=h)
        deal = await client.post("/api/v1/deals", json={"title": "Big", "amount": "100.00"}, headers=h)
        assert deal.status_code == 201, deal.text
        deal_id = deal.json()["id"]
        won = await client.patch(f"/api/v1/deals/{deal_id}/status", json={"status": "won"}, headers=h)
        assert won.status_code == 200, won.text

        relayed, runs = await pump(test_maker)
        assert relayed.events == 4
        assert sum(r.sent for r in runs) == 7

        got_deals = receiver.received("deals")
        assert [verify(deals["secret"], r)["type"] for r in got_deals] == ["deal.created", "deal.won"]
        payload = verify(deals["secret"], got_deals[1])
        assert payload["data"]["id"] == deal_id
        assert payload["data"]["object"]["status"] == "won"
        assert payload["data"]["changes"]["status"][1] == "won"
        assert [verify(contacts["secret"], r)["type"] for r in receiver.received("contacts")] == [
            "contact.created"
        ]
        all_types = [verify(everything["secret"], r)["type"] for r in receiver.received("all")]
        assert all_types == ["contact.created", "contact.updated", "deal.created", "deal.won"]
        # Event ids (and so the order) increase; every message id is distinct.
        ids = [int(r.json()["id"].removeprefix("evt_")) for r in receiver.received("all")]
        assert ids == sorted(ids)
        assert len({r.headers["webhook-id"] for r in receiver.requests}) == 7

        # Relaying and delivering again sends nothing twice.
        relayed, runs = await pump(test_maker, deals["id"], contacts["id"], everything["id"])
        assert relayed.events == 0
        assert sum(r.sent for r in runs) == 0
        assert len(receiver.requests) == 7

        log = await client.get(f"{URL}/{deals['id']}/deliveries", headers=h)
        assert log.status_code == 200
        items = log.json()["items"]
        assert [i["event_type"] for i in items] == ["deal.won", "deal.created"]
        assert all(i["status"] == "succeeded" and i["response_code"] == 200 for i in items)
        assert all(i["attempts"] == 1 and i["duration_ms"] is not None for i in items)
        entry = items[0]["log"][0]
        assert entry == {
            "attempt": 1,
            "at": entry["at"],
            "response_code": 200,
            "duration_ms": items[0]["duration_ms"],
            "error": None,
        }
        assert entry["at"].endswith("Z")
        assert datetime.fromisoformat(entry["at"]) == datetime.fromisoformat(items[0]["delivered_at"])
        assert await count(db, OutboxEvent, OutboxEvent.published_at.is_(None)) == 0

    async def test_events_are_written_with_the_change_and_not_on_rollback(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await factory.actor("admin")
        h = admin.headers
        await client.post("/api/v1/contacts", json={"full_name": "A", "email": "a@example.com"}, headers=h)
        taken = await client.post(
            "/api/v1/contacts", json={"full_name": "B", "email": "a@example.com"}, headers=h
        )
        assert taken.status_code == 409
        events = (
            await db.scalars(
                select(OutboxEvent.event_type).where(OutboxEvent.organization_id == admin.org_id)
            )
        ).all()
        assert events == ["contact.created"]

    async def test_disabled_subscription_gets_nothing(
        self,
        client: AsyncClient,
        factory: Factory,
        receiver: Receiver,
        test_maker: async_sessionmaker[AsyncSession],
    ) -> None:
        admin = await factory.actor("admin")
        await create(client, admin, receiver.url("off"), ["*"], enabled=False)
        await client.post("/api/v1/contacts", json={"full_name": "A"}, headers=admin.headers)
        relayed, _runs = await pump(test_maker)
        assert relayed.events == 1
        assert relayed.webhooks == set()
        assert receiver.received("off") == []

    async def test_failures_are_retried_in_order_then_the_subscription_is_disabled(
        self,
        client: AsyncClient,
        factory: Factory,
        db: AsyncSession,
        receiver: Receiver,
        test_maker: async_sessionmaker[AsyncSession],
        override_settings: Any,
    ) -> None:
        override_settings(webhook_retry_delays="0,0")  # three attempts, no waiting
        admin = await factory.actor("admin")
        hook = await create(client, admin, receiver.url("flaky"), ["contact.*"])
        await client.post("/api/v1/contacts", json={"full_name": "First"}, headers=admin.headers)
        await client.post("/api/v1/contacts", json={"full_name": "Second"}, headers=admin.headers)
        receiver.script("flaky", 500, 503)
        _relayed, runs = await pump(test_maker)
        assert runs[0].failed == 1
        assert runs[0].sent == 0
        run = await deliver_pending(test_maker, hook["id"])
        assert (run.sent, run.failed) == (0, 1)
        run = await deliver_pending(test_maker, hook["id"])
        assert (run.sent, run.failed) == (2, 0)
        names = [r.json()["data"]["object"]["full_name"] for r in receiver.received("flaky")]
        assert names == ["First", "First", "First", "Second"]
        first = (await client.get(f"{URL}/{hook['id']}/deliveries", headers=admin.headers)).json()["items"][
            -1
        ]
        assert first["attempts"] == 3
        assert [a["response_code"] for a in first["log"]] == [500, 503, 200]
        assert first["log"][0]["error"] == "HTTP 500"

        # Now it keeps failing: after the last attempt the subscription is disabled, admins told.
        receiver.script("flaky", 500, 500, 500)
        await client.post("/api/v1/contacts", json={"full_name": "Third"}, headers=admin.headers)
        await pump(test_maker)
        await deliver_pending(test_maker, hook["id"])
        await deliver_pending(test_maker, hook["id"])
        db.expunge_all()
        stored = await db.get(Webhook, hook["id"])
        assert stored is not None
        assert stored.enabled is False
        assert stored.disabled_reason is not None
        assert "HTTP 500" in stored.disabled_reason
        failed = await db.scalar(
            select(WebhookDelivery).where(
                WebhookDelivery.webhook_id == hook["id"], WebhookDelivery.status == "failed"
            )
        )
        assert failed is not None
        assert failed.attempts == 3
        assert len(failed.log) == 3
        note = await db.scalar(select(Notification).where(Notification.kind == "webhook_disabled"))
        assert note is not None
        assert note.user_id == admin.user.id
        # Disabled: nothing more is sent.
        assert (await deliver_pending(test_maker, hook["id"])).sent == 0

    async def test_timeouts_and_closed_connections_are_failures(
        self,
        client: AsyncClient,
        factory: Factory,
        receiver: Receiver,
        test_maker: async_sessionmaker[AsyncSession],
        override_settings: Any,
    ) -> None:
        override_settings(webhook_timeout_seconds=1.0)
        admin = await factory.actor("admin")
        slow = await create(client, admin, receiver.url("slow"), ["*"])
        dead = await create(client, admin, "http://127.0.0.1:18699/nothing-listens", ["*"])
        fast = await create(client, admin, receiver.url("fast"), ["*"])
        receiver.delays["/hooks/slow"] = 4.0
        await client.post("/api/v1/contacts", json={"full_name": "A"}, headers=admin.headers)
        _, runs = await pump(test_maker)
        by_hook = dict(zip(sorted([slow["id"], dead["id"], fast["id"]]), runs, strict=True))
        assert by_hook[fast["id"]].sent == 1
        assert by_hook[slow["id"]].failed == 1
        assert by_hook[dead["id"]].failed == 1
        log = (await client.get(f"{URL}/{slow['id']}/deliveries", headers=admin.headers)).json()["items"][0]
        assert log["error"] == "timeout"
        assert log["status"] == "pending"
        log = (await client.get(f"{URL}/{dead['id']}/deliveries", headers=admin.headers)).json()["items"][0]
        assert "ConnectError" in log["error"]

    async def test_redirects_are_not_followed(
        self,
        client: AsyncClient,
        factory: Factory,
        receiver: Receiver,
        test_maker: async_sessionmaker[AsyncSession],
    ) -> None:
        admin = await factory.actor("admin")
        hook = await create(client, admin, receiver.url("moved"), ["*"])
        receiver.script("moved", 302)
        await client.post("/api/v1/contacts", json={"full_name": "A"}, headers=admin.headers)
        await pump(test_maker)
        log = (await client.get(f"{URL}/{hook['id']}/deliveries", headers=admin.headers)).json()["items"][0]
        assert log["response_code"] == 302
        assert "redirects are not followed" in log["error"]
        assert len(receiver.received("moved")) == 1

    async def test_url_is_checked_again_at_delivery(
        self,
        client: AsyncClient,
        factory: Factory,
        receiver: Receiver,
        test_maker: async_sessionmaker[AsyncSession],
        override_settings: Any,
    ) -> None:
        admin = await factory.actor("admin")
        hook = await create(client, admin, receiver.url("private"), ["*"])
        await client.post("/api/v1/contacts", json={"full_name": "A"}, headers=admin.headers)
        override_settings(allow_private_integration_urls=False)
        await pump(test_maker)
        assert receiver.received("private") == []
        log = (await client.get(f"{URL}/{hook['id']}/deliveries", headers=admin.headers)).json()["items"][0]
        assert log["error"].startswith("url_not_allowed")
        assert log["response_code"] is None

    async def test_redeliver_and_test_ping(
        self,
        client: AsyncClient,
        factory: Factory,
        receiver: Receiver,
        test_maker: async_sessionmaker[AsyncSession],
    ) -> None:
        admin = await factory.actor("admin")
        hook = await create(client, admin, receiver.url("again"), ["contact.created"])
        await client.post("/api/v1/contacts", json={"full_name": "A"}, headers=admin.headers)
        await pump(test_maker)
        delivery = (await client.get(f"{URL}/{hook['id']}/deliveries", headers=admin.headers)).json()[
            "items"
        ][0]
        again = await client.post(
            f"{URL}/{hook['id']}/deliveries/{delivery['id']}/redeliver", headers=admin.headers
        )
        assert again.status_code == 202, again.text
        assert again.json()["status"] == "pending"
        await deliver_pending(test_maker, hook["id"])
        first, second = receiver.received("again")
        assert first.headers["webhook-id"] == second.headers["webhook-id"] == f"msg_{delivery['id']}"
        verify(hook["secret"], second)

        ping = await client.post(f"{URL}/{hook['id']}/test", headers=admin.headers)
        assert ping.status_code == 202
        assert ping.json()["event_type"] == "webhook.test"
        await deliver_pending(test_maker, hook["id"])
        assert verify(hook["secret"], receiver.received("again")[-1])["type"] == "webhook.test"

        missing = await client.post(f"{URL}/{hook['id']}/deliveries/999999/redeliver", headers=admin.headers)
        assert_problem(missing, 404, "not_found")

    async def test_task_and_bulk_events(
        self,
        client: AsyncClient,
        factory: Factory,
        db: AsyncSession,
        receiver: Receiver,
        test_maker: async_sessionmaker[AsyncSession],
    ) -> None:
        admin = await factory.actor("admin")
        org = await db.get(Organization, admin.org_id)
        assert org is not None
        colleague = await make_user(db)
        await add_member(db, org, colleague, "manager")
        await db.commit()
        hook = await create(client, admin, receiver.url("tasks"), ["task.*"])
        task = await client.post(
            "/api/v1/tasks", json={"title": "Call", "assignee_id": colleague.id}, headers=admin.headers
        )
        assert task.status_code == 201, task.text
        done = await client.patch(
            f"/api/v1/tasks/{task.json()['id']}", json={"status": "done"}, headers=admin.headers
        )
        assert done.status_code == 200
        await pump(test_maker)
        types = [verify(hook["secret"], r)["type"] for r in receiver.received("tasks")]
        assert types == ["task.created", "task.assigned", "task.updated", "task.completed"]
        # The assignee was told (in-app), the actor was not.
        notes = (await db.scalars(select(Notification).where(Notification.kind == "task_assigned"))).all()
        assert [(n.user_id, n.entity_id) for n in notes] == [(colleague.id, task.json()["id"])]


class TestAlertRaised:
    async def test_a_low_stock_alert_raised_over_http_is_delivered_once(
        self,
        client: AsyncClient,
        factory: Factory,
        db: AsyncSession,
        receiver: Receiver,
        test_maker: async_sessionmaker[AsyncSession],
    ) -> None:
        admin = await factory.actor("admin")
        alerts = await create(client, admin, receiver.url("alerts"), ["alert.*"])
        await create(client, admin, receiver.url("alert-deals"), ["deal.*"])
        product = await make_product(db, admin.org_id, "Мало")
        await set_stock(db, product, await make_store(db, admin.org_id, "Склад"), 3)
        await db.commit()

        patched = await client.patch(
            f"/api/v1/products/{product.id}", json={"min_stock": 10}, headers=admin.headers
        )
        assert patched.status_code == 200, patched.text
        (alert,) = (await client.get("/api/v1/alerts", headers=admin.headers)).json()["items"]
        relayed, runs = await pump(test_maker)
        assert relayed.events == 1
        assert sum(r.sent for r in runs) == 1

        (got,) = receiver.received("alerts")
        payload = verify(alerts["secret"], got)
        assert payload["type"] == "alert.raised"
        assert payload["organization_id"] == admin.org_id
        data = payload["data"]
        assert data["id"] == alert["id"]
        assert data["kind"] == "low_stock"
        assert data["severity"] == "warning"
        assert data["entity_type"] == "product"
        assert data["entity_id"] == product.id
        assert data["data"] == {"product_id": product.id, "stock": 3, "min_stock": 10}
        assert receiver.received("alert-deals") == []
        # The admins see it as a notification (once, not again from the event).
        notified = await client.get("/api/v1/notifications", headers=admin.headers)
        assert [n["kind"] for n in notified.json()["items"]] == ["low_stock"]

        # The condition persists: a second evaluation raises nothing and sends nothing.
        again = await client.patch(
            f"/api/v1/products/{product.id}", json={"min_stock": 12}, headers=admin.headers
        )
        assert again.status_code == 200
        relayed, runs = await pump(test_maker, alerts["id"])
        assert relayed.events == 0
        assert len(receiver.received("alerts")) == 1
        assert await count(db, OutboxEvent, OutboxEvent.event_type == "alert.raised") == 1


class TestRelayCrash:
    async def test_a_relay_that_dies_midway_publishes_nothing_and_the_next_publishes_once(
        self,
        client: AsyncClient,
        factory: Factory,
        db: AsyncSession,
        receiver: Receiver,
        test_maker: async_sessionmaker[AsyncSession],
    ) -> None:
        from crm.outbox.relay import CONSUMERS

        admin = await factory.actor("admin")
        await create(client, admin, receiver.url("crash"), ["*"])
        for n in range(3):
            await client.post("/api/v1/contacts", json={"full_name": f"C{n}"}, headers=admin.headers)

        async def crash(*_: Any) -> set[int]:
            raise RuntimeError("worker died")

        CONSUMERS.append(crash)
        try:
            with pytest.raises(RuntimeError):
                await pump(test_maker)
        finally:
            CONSUMERS.remove(crash)
        assert await count(db, WebhookDelivery) == 0
        assert await count(db, OutboxEvent, OutboxEvent.published_at.is_(None)) == 3
        relayed, runs = await pump(test_maker)
        assert relayed.events == 3
        assert sum(r.sent for r in runs) == 3
        assert len(receiver.received("crash")) == 3
        # A stale delivery time or a second relay changes nothing.
        await db.execute(update(OutboxEvent).values(published_at=None))
        await db.flush()
        relayed, runs = await pump(test_maker)
        assert relayed.events == 3
        assert sum(r.sent for r in runs) == 0
        assert len(receiver.received("crash")) == 3
