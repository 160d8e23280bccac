from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Notification


class NotificationRepository:
    """One user's notifications within one organization (plus their organization-less ones)."""

    def __init__(self, session: AsyncSession, organization_id: int, user_id: int) -> None:
        self.session = session
        self.organization_id = organization_id
        self.user_id = user_id

    def _scope(self) -> list[object]:
        return [
            Notification.user_id == self.user_id,
            or_(Notification.organization_id == self.organization_id, Notification.organization_id.is_(None)),
        ]

    def base(self) -> Select[tuple[Notification]]:
        return select(Notification).where(*self._scope())  # type: ignore[arg-type]

    async def list(self, unread: bool | None, limit: int, offset: int) -> tuple[Sequence[Notification], int]:
        stmt = self.base()
        if unread is True:
            stmt = stmt.where(Notification.read_at.is_(None))
        elif unread is False:
            stmt = stmt.where(Notification.read_at.is_not(None))
        total = int(
            await self.session.scalar(stmt.with_only_columns(func.count(), maintain_column_froms=True)) or 0
        )
        rows = await self.session.scalars(
            stmt.order_by(Notification.created_at.desc(), Notification.id.desc()).limit(limit).offset(offset)
        )
        return rows.all(), total

    async def mark_read(self, notification_id: int) -> bool:
        """Mark one as read (a second time keeps the first time); False when it is not the user's."""
        found = await self.session.scalar(
            update(Notification)
            .where(Notification.id == notification_id, *self._scope())  # type: ignore[arg-type]
            .values(read_at=func.coalesce(Notification.read_at, datetime.now(UTC)))
            .returning(Notification.id)
        )
        return found is not None

    async def mark_all_read(self) -> int:
        result = await self.session.execute(
            update(Notification)
            .where(Notification.read_at.is_(None), *self._scope())  # type: ignore[arg-type]
            .values(read_at=datetime.now(UTC))
            .returning(Notification.id)
        )
        return len(result.all())

    async def unread_count(self) -> int:
        stmt = select(func.count()).select_from(Notification).where(Notification.read_at.is_(None))
        stmt = stmt.where(*self._scope())  # type: ignore[arg-type]
        return int(await self.session.scalar(stmt) or 0)
