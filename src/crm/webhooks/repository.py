from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from crm.core.repository import TenantRepository
from crm.models import Webhook, WebhookDelivery


class WebhookRepository(TenantRepository[Webhook]):
    model = Webhook

    async def list_page(self, limit: int, offset: int) -> tuple[Sequence[Webhook], int]:
        return await self.page(self.base(), [Webhook.created_at.desc(), Webhook.id.desc()], limit, offset)

    async def enabled(self) -> Sequence[Webhook]:
        rows = await self.session.scalars(self.base().where(Webhook.enabled.is_(True)).order_by(Webhook.id))
        return rows.all()


class DeliveryRepository(TenantRepository[WebhookDelivery]):
    model = WebhookDelivery

    async def list_page(
        self, webhook_id: int, status: str | None, limit: int, offset: int
    ) -> tuple[Sequence[WebhookDelivery], int]:
        stmt = self.base().where(WebhookDelivery.webhook_id == webhook_id)
        if status is not None:
            stmt = stmt.where(WebhookDelivery.status == status)
        return await self.page(stmt, [WebhookDelivery.id.desc()], limit, offset)

    async def get_of_webhook(self, webhook_id: int, delivery_id: int) -> WebhookDelivery | None:
        row: WebhookDelivery | None = await self.session.scalar(
            self.base()
            .where(WebhookDelivery.webhook_id == webhook_id, WebhookDelivery.id == delivery_id)
            .with_for_update()
        )
        return row

    async def insert_many(self, rows: list[dict[str, object]]) -> set[int]:
        """Add deliveries; a pair (event, webhook) that exists already is left alone."""
        if not rows:
            return set()
        result = await self.session.execute(
            insert(WebhookDelivery)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["event_id", "webhook_id"])
            .returning(WebhookDelivery.webhook_id)
        )
        return set(result.scalars())


async def enabled_webhooks(session: AsyncSession, organization_id: int) -> Sequence[Webhook]:
    rows = await session.scalars(
        select(Webhook)
        .where(Webhook.organization_id == organization_id, Webhook.enabled.is_(True))
        .order_by(Webhook.id)
    )
    return rows.all()
