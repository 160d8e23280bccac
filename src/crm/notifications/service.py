"""Creating notifications: features call `notify_users` inside their own transaction."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Membership, Notification, User


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
