"""Creating notifications: features call `notify_users` inside their own transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from crm.config import get_settings
from crm.core.db import on_commit
from crm.core.errors import Forbidden, NotFound
from crm.models import Membership, Notification, NotificationPreference, User
from crm.notifications.emails import render
from crm.notifications.live import publish
from crm.notifications.repository import NotificationRepository
from crm.notifications.schemas import KINDS, KindPreference, PreferencesRead, PreferencesUpdate

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
    dedupe_key: str | None = None,
) -> int:
    """One notification row per distinct active user, in one statement; returns how many were
    written. With a `dedupe_key` a user gets it at most once (a second call writes nothing).

    Preferences apply: a kind the user muted is stored already read and not pushed live; a kind
    the user wants by email is also sent by email (when `SMTP_URL` is set). After commit each new
    row is published on the user's live channel (SSE)."""
    users = sorted(set(user_ids))
    if not users:
        return 0
    recipients = (
        await session.execute(
            select(
                User.id,
                User.email,
                User.full_name,
                User.language,
                NotificationPreference.muted_kinds,
                NotificationPreference.email_kinds,
            )
            .outerjoin(NotificationPreference, NotificationPreference.user_id == User.id)
            .where(User.id.in_(users), User.is_active.is_(True))
        )
    ).all()
    if not recipients:
        return 0
    now = datetime.now(UTC)
    insert_stmt = pg_insert(Notification).values(
        [
            {
                "organization_id": organization_id,
                "user_id": r.id,
                "kind": kind,
                "title": title[:300],
                "body": body,
                "entity_type": entity_type,
                "entity_id": entity_id,
                "data": data or {},
                "dedupe_key": dedupe_key,
                "read_at": now if kind in (r.muted_kinds or ()) else None,
            }
            for r in recipients
        ]
    )
    if dedupe_key is not None:
        insert_stmt = insert_stmt.on_conflict_do_nothing(
            index_elements=["user_id", "dedupe_key"], index_where=text("dedupe_key IS NOT NULL")
        )
    stmt = insert_stmt.returning(Notification.id, Notification.user_id)
    written = {user_id: nid for nid, user_id in (await session.execute(stmt)).all()}
    by_id = {r.id: r for r in recipients}
    live = [(nid, uid) for uid, nid in written.items() if kind not in (by_id[uid].muted_kinds or ())]
    if live:
        on_commit(session, publish, live)
    if get_settings().smtp_url:
        for uid in written:
            r = by_id[uid]
            if kind in (r.email_kinds or ()):
                subject, plain, html = render(kind, r.language, r.full_name, title, body, data or {})
                on_commit(session, _send_email, r.email, subject, plain, html)
    return len(written)


async def _send_email(to: str, subject: str, body: str, html: str) -> None:
    from crm.notifications.jobs import send_email

    await asyncio.to_thread(
        send_email.apply_async, kwargs={"to": to, "subject": subject, "body": body, "html": html}
    )


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


async def is_active_member(session: AsyncSession, user_id: int, organization_id: int) -> bool:
    """Whether the user is active and still a member of the organization."""
    found = await session.scalar(
        select(Membership.user_id)
        .join(User, User.id == Membership.user_id)
        .where(
            Membership.organization_id == organization_id,
            Membership.user_id == user_id,
            User.is_active.is_(True),
        )
    )
    return found is not None


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

    async def unread_count(self) -> int:
        return await self.repo.unread_count()


class PreferenceService:
    """The caller's notification preferences and language."""

    def __init__(self, db: AsyncSession, user_id: int) -> None:
        self.db = db
        self.user_id = user_id

    async def get(self) -> PreferencesRead:
        user = await self.db.get(User, self.user_id)
        pref = await self.db.get(NotificationPreference, self.user_id)
        muted = set(pref.muted_kinds) if pref else set()
        email = set(pref.email_kinds) if pref else set()
        return PreferencesRead(
            language="ru" if user is not None and user.language == "ru" else "en",
            kinds={k: KindPreference(in_app=k not in muted, email=k in email) for k in KINDS},
        )

    async def replace(self, data: PreferencesUpdate) -> PreferencesRead:
        muted = sorted(k for k, p in data.kinds.items() if not p.in_app)
        email = sorted(k for k, p in data.kinds.items() if p.email)
        await self.db.execute(
            pg_insert(NotificationPreference)
            .values(user_id=self.user_id, muted_kinds=muted, email_kinds=email)
            .on_conflict_do_update(
                index_elements=["user_id"],
                set_={"muted_kinds": muted, "email_kinds": email, "updated_at": datetime.now(UTC)},
            )
        )
        if data.language is not None:
            await self.db.execute(update(User).where(User.id == self.user_id).values(language=data.language))
        self.db.expire_all()
        return await self.get()
