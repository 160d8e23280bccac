"""Subscriptions (CRUD for organization admins), the delivery log, redelivery and test pings, and
the outbox consumer that turns events into deliveries."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from crm.core.concurrency import check_version
from crm.core.db import on_commit
from crm.integrations.ssrf import allow_private_urls, check_url
from crm.models import OutboxEvent, Webhook, WebhookDelivery
from crm.organizations.dependencies import Tenant
from crm.outbox.events import matches
from crm.webhooks.delivery import event_body
from crm.webhooks.exceptions import DeliveryNotFound, WebhookNotFound
from crm.webhooks.repository import DeliveryRepository, WebhookRepository, enabled_webhooks
from crm.webhooks.schemas import WebhookCreate, WebhookUpdate
from crm.webhooks.signing import generate_secret


async def send_delivery_job(webhook_id: int, countdown: float | None = None) -> None:
    """Queue the delivery job of one subscription (after commit; the beat sweep covers a lost send)."""
    from crm.webhooks.jobs import queue_delivery

    await asyncio.to_thread(queue_delivery, webhook_id, countdown)


class WebhookService:
    def __init__(self, db: AsyncSession, tenant: Tenant) -> None:
        self.db = db
        self.tenant = tenant
        self.repo = WebhookRepository(db, tenant.organization_id)
        self.deliveries = DeliveryRepository(db, tenant.organization_id)

    async def get(self, webhook_id: int) -> Webhook:
        row = await self.repo.get(webhook_id)
        if row is None:
            raise WebhookNotFound()
        return row

    async def list(self, limit: int, offset: int) -> tuple[Sequence[Webhook], int]:
        return await self.repo.list_page(limit, offset)

    async def create(self, data: WebhookCreate) -> Webhook:
        await check_url(data.url, allow_private=allow_private_urls(), field="url")
        row = Webhook(
            organization_id=self.tenant.organization_id,
            url=data.url,
            events=data.events,
            secret=data.secret or generate_secret(),
            description=data.description,
            enabled=data.enabled,
            created_by_id=self.tenant.user_id,
        )
        self.repo.add(row)
        await self.db.flush()
        return row

    async def update(self, webhook_id: int, data: WebhookUpdate, if_match: str | None) -> Webhook:
        row = await self.repo.get(webhook_id, for_update=True)
        if row is None:
            raise WebhookNotFound()
        check_version(row.version, if_match)
        values = data.model_dump(exclude_unset=True)
        for name in ("url", "events", "enabled"):
            if name in values and values[name] is None:
                del values[name]
        if "url" in values:
            await check_url(values["url"], allow_private=allow_private_urls(), field="url")
        if values.get("secret", "") is None:
            del values["secret"]
        changed = False
        for name, value in values.items():
            if getattr(row, name) != value:
                setattr(row, name, value)
                changed = True
        if values.get("enabled") is True:
            row.disabled_reason = None
            on_commit(self.db, send_delivery_job, row.id)
        if changed:
            row.version += 1
            row.updated_at = datetime.now(UTC)
            await self.db.flush()
        return row

    async def delete(self, webhook_id: int) -> None:
        row = await self.get(webhook_id)
        await self.db.delete(row)
        await self.db.flush()

    async def list_deliveries(
        self, webhook_id: int, status: str | None, limit: int, offset: int
    ) -> tuple[Sequence[WebhookDelivery], int]:
        await self.get(webhook_id)
        return await self.deliveries.list_page(webhook_id, status, limit, offset)

    async def redeliver(self, webhook_id: int, delivery_id: int) -> WebhookDelivery:
        """Send a delivery again (its id, and so its `webhook-id`, stays the same)."""
        await self.get(webhook_id)
        delivery = await self.deliveries.get_of_webhook(webhook_id, delivery_id)
        if delivery is None:
            raise DeliveryNotFound()
        delivery.status = "pending"
        delivery.next_attempt_at = datetime.now(UTC)
        delivery.delivered_at = None
        await self.db.flush()
        on_commit(self.db, send_delivery_job, webhook_id)
        return delivery

    async def test(self, webhook_id: int) -> WebhookDelivery:
        """A `webhook.test` event delivered to this subscription only (even when it is disabled
        the delivery is logged; it is sent once the subscription is enabled)."""
        row = await self.get(webhook_id)
        now = datetime.now(UTC)
        event = OutboxEvent(
            organization_id=self.tenant.organization_id,
            event_type="webhook.test",
            entity_type="webhook",
            entity_id=row.id,
            actor_id=self.tenant.user_id,
            payload={"webhook_id": row.id, "message": "Test delivery from the CRM"},
            published_at=now,
        )
        self.db.add(event)
        await self.db.flush()
        delivery = WebhookDelivery(
            organization_id=self.tenant.organization_id,
            webhook_id=row.id,
            event_id=event.id,
            event_type=event.event_type,
            next_attempt_at=now,
        )
        self.db.add(delivery)
        await self.db.flush()
        on_commit(self.db, send_delivery_job, row.id)
        return delivery


async def fan_out(session: AsyncSession, organization_id: int, events: Sequence[OutboxEvent]) -> set[int]:
    """Outbox consumer: a delivery per event and enabled subscription whose patterns match."""
    hooks = await enabled_webhooks(session, organization_id)
    if not hooks:
        return set()
    webhook_ids: list[int] = []
    event_ids: list[int] = []
    event_types: list[str] = []
    for event in events:
        if event.event_type == "webhook.test":
            continue
        sent = False
        for hook in hooks:
            if matches(hook.events, event.event_type):
                webhook_ids.append(hook.id)
                event_ids.append(event.id)
                event_types.append(event.event_type)
                sent = True
        if sent:
            event_body(event)  # made once here; every subscriber's sender in this process reuses it
    return await DeliveryRepository(session, organization_id).insert_many(webhook_ids, event_ids, event_types)
