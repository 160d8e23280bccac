"""Creating notifications: features call `notify_users` inside their own transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.core.errors import Forbidden, NotFound
from crm.models import Membership, Notification, User
from crm.notifications.repository import NotificationRepository

if TYPE_CHECKING:
    from crm.organizations.dependencies import Tenant


async def notify_users(
    session: AsyncSession,
    *,
    organization_id: int | None,
    user_ids: Iterable[int],
    kind: str,
    title: str,
    body: str | None = None,
    entity_type: str | None = None,
    entity_id: int | None = None,
    data: dict[str, Any] | None = None,
) -> int:
    """One notification row per distinct user, in one statement; returns how many were written."""
    users = sorted(set(user_ids))
    if not users:
        return 0
    await session.execute(
        insert(Notification),
        [
            {
                "organization_id": organization_id,
                "user_id": user_id,
                "kind": kind,
                "title": title,
                "body": body,
                "entity_type": entity_type,
                "entity_id": entity_id,
                "data": data or {},
            }
            for user_id in users
        ],
    )
    return len(users)


async def organization_admin_ids(session: AsyncSession, organization_id: int) -> list[int]:
    """Active owners and admins of an organization (who get system alerts)."""
    rows = await session.scalars(
        select(Membership.user_id)
        .join(User, User.id == Membership.user_id)
        .where(
            Membership.organization_id == organization_id,
            Membership.role.in_(("owner", "admin")),
            User.is_active.is_(True),
        )
    )
    return list(rows)


class NotificationService:
    """The caller's own notifications (SPEC §12); anyone else's are not found."""

    def __init__(self, db: AsyncSession, tenant: Tenant) -> None:
        if tenant.user_id is None:
            raise Forbidden("Notifications belong to users; an API key has none")
        self.repo = NotificationRepository(db, tenant.organization_id, tenant.user_id)

    async def list(self, unread: bool | None, limit: int, offset: int) -> tuple[Sequence[Notification], int]:
        return await self.repo.list(unread, limit, offset)

    async def mark_read(self, notification_id: int) -> None:
        if not await self.repo.mark_read(notification_id):
            raise NotFound("Notification not found")

    async def mark_all_read(self) -> int:
        return await self.repo.mark_all_read()
