from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from sqlalchemy import BigInteger, String, Table, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY, insert
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

    async def insert_many(
        self, webhook_ids: list[int], event_ids: list[int], event_types: list[str]
    ) -> set[int]:
        """Add the deliveries (`webhook_ids[i]`, `event_ids[i]`); a pair that exists already is
        left alone. One statement whatever the number of rows (the pairs travel as three arrays)."""
        if not webhook_ids:
            return set()
        result = await self.session.execute(
            _INSERT_DELIVERIES,
            {
                "organization_id": self.organization_id,
                "webhook_ids": webhook_ids,
                "event_ids": event_ids,
                "event_types": event_types,
            },
        )
        return set(result.scalars())


_PAIRS = (
    func.unnest(
        bindparam("webhook_ids", type_=ARRAY(BigInteger)),
        bindparam("event_ids", type_=ARRAY(BigInteger)),
        bindparam("event_types", type_=ARRAY(String)),
    )
    .table_valued("webhook_id", "event_id", "event_type")
    .render_derived()
)
#: Statuses, attempts, times and the log take their server defaults (pending, due now).
_INSERT_DELIVERIES = (
    insert(cast(Table, WebhookDelivery.__table__))
    .from_select(
        ["organization_id", "webhook_id", "event_id", "event_type"],
        select(
            bindparam("organization_id", type_=BigInteger),
            _PAIRS.c.webhook_id,
            _PAIRS.c.event_id,
            _PAIRS.c.event_type,
        ),
        include_defaults=False,
    )
    .on_conflict_do_nothing(index_elements=["event_id", "webhook_id"])
    .returning(cast(Table, WebhookDelivery.__table__).c.webhook_id)
)


async def enabled_webhooks(session: AsyncSession, organization_id: int) -> Sequence[Webhook]:
    rows = await session.scalars(
        select(Webhook)
        .where(Webhook.organization_id == organization_id, Webhook.enabled.is_(True))
        .order_by(Webhook.id)
    )
    return rows.all()
