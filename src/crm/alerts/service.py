"""System alerts for an organization's admins (SPEC §12): low stock and sync failures.

An alert is *open* until an admin acknowledges it or its condition clears (*resolved*). At most one
unresolved alert exists per key (`low_stock:product:<id>`, `sync_failed:integration:<id>`): the
partial unique index on open alerts makes raising race-free, and raising skips keys whose alert was
acknowledged but has not cleared yet, so an acknowledged condition is not raised again on every sync.
Admins (owners and admins) are notified when an alert is raised, never for one already there, and
an `alert.raised` domain event is written in the same transaction (webhook subscribers get it).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.activities.service import ActivityService
from crm.alerts.exceptions import AlertNotFound
from crm.alerts.repository import LOW_STOCK, SYNC_FAILED, AlertRepository
from crm.alerts.schemas import AlertRead
from crm.core.schemas import from_row
from crm.models import Alert, Integration, SyncJob
from crm.notifications.service import notify_users, organization_admin_ids
from crm.organizations.dependencies import Tenant
from crm.outbox.service import emit

#: More new low-stock alerts than this at once are announced in one summary notification.
MAX_NOTIFICATIONS_PER_RUN = 20


def emit_raised(
    session: AsyncSession,
    organization_id: int,
    alert_id: int,
    values: dict[str, Any],
) -> None:
    """The `alert.raised` event of one new alert: `{id, kind, key, severity, title, message,
    entity_type, entity_id, data}`."""
    emit(
        session,
        organization_id,
        "alert.raised",
        entity_type="alert",
        entity_id=alert_id,
        data={"id": alert_id, **values},
    )


def alert_status(alert: Alert) -> str:
    if alert.resolved_at is not None:
        return "resolved"
    if alert.acknowledged_at is not None:
        return "acknowledged"
    return "open"


def alert_read(alert: Alert) -> AlertRead:
    return from_row(AlertRead, alert, status=alert_status(alert))


async def evaluate_low_stock(session: AsyncSession, organization_id: int) -> list[int]:
    """Raise a low-stock alert for each product whose total stock is below its `min_stock`, resolve
    those whose stock recovered, and notify the admins of the new ones. Returns the new alert ids."""
    repo = AlertRepository(session, organization_id)
    await repo.resolve_low_stock(datetime.now(UTC))
    new = await repo.raise_low_stock()
    if not new:
        return []
    admins = await organization_admin_ids(session, organization_id)
    if len(new) <= MAX_NOTIFICATIONS_PER_RUN:
        for row in new:
            emit_raised(
                session,
                organization_id,
                row.id,
                {
                    "kind": LOW_STOCK,
                    "key": f"low_stock:product:{row.entity_id}",
                    "severity": "warning",
                    "title": row.title,
                    "message": row.message,
                    "entity_type": "product",
                    "entity_id": row.entity_id,
                    "data": row.data,
                },
            )
            await notify_users(
                session,
                organization_id=organization_id,
                user_ids=admins,
                kind="low_stock",
                title=row.title,
                body=row.message,
                entity_type="product",
                entity_id=row.entity_id,
                data={"alert_id": row.id, "product_id": row.entity_id},
            )
    else:
        # Many at once (a sync moved a whole catalogue): one summary event and one notification.
        title = f"{len(new)} products are below their minimum stock"
        emit(
            session,
            organization_id,
            "alert.raised",
            entity_type="alert",
            data={"kind": LOW_STOCK, "severity": "warning", "title": title, "alert_ids": [r.id for r in new]},
        )
        await notify_users(
            session,
            organization_id=organization_id,
            user_ids=admins,
            kind="low_stock",
            title=title,
            data={"alert_ids": [row.id for row in new]},
        )
    return [row.id for row in new]


def _sync_key(job: SyncJob) -> str:
    return f"sync_failed:integration:{job.integration_id}"


async def raise_sync_failed_alert(session: AsyncSession, job: SyncJob) -> int | None:
    """Raise an alert for a failed sync job and notify the admins; while one is already open for
    the integration it is updated with this job's error instead. Returns the new alert id."""
    name = await session.scalar(
        select(Integration.name).where(
            Integration.id == job.integration_id, Integration.organization_id == job.organization_id
        )
    )
    title = f"Sync failed: {name or f'integration {job.integration_id}'}"[:300]
    message = job.error or "The sync job failed"
    data: dict[str, Any] = {"job_id": job.id, "integration_id": job.integration_id}
    repo = AlertRepository(session, job.organization_id)
    values: dict[str, Any] = {
        "kind": SYNC_FAILED,
        "key": _sync_key(job),
        "severity": "error",
        "title": title,
        "message": message,
        "entity_type": "integration",
        "entity_id": job.integration_id,
        "data": data,
    }
    alert_id = await repo.raise_once(values)
    if alert_id is None:
        await repo.update_open(_sync_key(job), {"message": message, "data": data})
        return None
    emit_raised(session, job.organization_id, alert_id, values)
    await notify_users(
        session,
        organization_id=job.organization_id,
        user_ids=await organization_admin_ids(session, job.organization_id),
        kind="sync_failed",
        title=title,
        body=message,
        entity_type="integration",
        entity_id=job.integration_id,
        data={**data, "alert_id": alert_id},
    )
    return alert_id


async def resolve_sync_failed_alert(session: AsyncSession, job: SyncJob) -> int:
    """A successful sync clears the integration's unresolved sync-failure alert."""
    return await AlertRepository(session, job.organization_id).resolve_key(_sync_key(job), datetime.now(UTC))


class AlertService:
    def __init__(self, db: AsyncSession, tenant: Tenant) -> None:
        self.db = db
        self.tenant = tenant
        self.repo = AlertRepository(db, tenant.organization_id)

    async def list(
        self, kind: str | None, status: str | None, limit: int, offset: int
    ) -> tuple[Sequence[AlertRead], int]:
        rows, total = await self.repo.list(kind, status, limit, offset)
        return [alert_read(a) for a in rows], total

    async def acknowledge(self, alert_id: int) -> AlertRead:
        """Acknowledge an alert; acknowledging it again keeps the first acknowledgement."""
        alert = await self.repo.get(alert_id, for_update=True)
        if alert is None:
            raise AlertNotFound()
        if alert.acknowledged_at is None:
            alert.acknowledged_at = datetime.now(UTC)
            alert.acknowledged_by_id = self.tenant.user_id
            ActivityService(self.db, self.tenant.organization_id, self.tenant.user_id).record(
                "alert", alert.id, "acknowledged", payload={"kind": alert.kind, "key": alert.key}
            )
            await self.db.flush()
        return alert_read(alert)
