"""Notifications made from domain events, preferences, unread count, reminders and email."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from httpx import AsyncClient
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.models import Notification, NotificationPreference, Organization, Task, User
from crm.notifications.reminders import send_reminders
from crm.outbox import consumers  # noqa: F401  (registers the relay's consumers)
from crm.outbox.relay import relay
from tests.factories import Actor, Factory, add_member, assert_problem, make_org, make_user
from tests.workers import Worker, celery_worker

URL = "/api/v1/notifications"
SMTP_PORT = 18640


async def colleague(factory: Factory, db: AsyncSession, boss: Actor, role: str = "manager") -> Actor:
    org = await db.get(Organization, boss.org_id)
    return await factory.actor(role, org=org)


async def kinds_of(db: AsyncSession, user_id: int) -> list[str]:
    db.expunge_all()
    rows = await db.scalars(
        select(Notification.kind).where(Notification.user_id == user_id).order_by(Notification.id)
    )
    return list(rows)


class TestFromEvents:
    async def test_task_assigned_deal_won_and_record_assigned(
        self,
        client: AsyncClient,
        factory: Factory,
        db: AsyncSession,
        test_maker: async_sessionmaker[AsyncSession],
    ) -> None:
        boss = await factory.actor("admin")
        me = await colleague(factory, db, boss)
        h = boss.headers
        task = await client.post(
            "/api/v1/tasks", json={"title": "Call", "assignee_id": me.user.id}, headers=h
        )
        assert task.status_code == 201
        deal = await client.post(
            "/api/v1/deals", json={"title": "Big", "amount": "10.00", "owner_id": me.user.id}, headers=h
        )
        assert deal.status_code == 201, deal.text
        won = await client.patch(
            f"/api/v1/deals/{deal.json()['id']}/status", json={"status": "won"}, headers=h
        )
        assert won.status_code == 200
        # My own change tells me nothing.
        await client.post(
            "/api/v1/tasks", json={"title": "Mine", "assignee_id": me.user.id}, headers=me.headers
        )
        await relay(test_maker)
        assert await kinds_of(db, me.user.id) == ["task_assigned", "record_assigned", "deal_won"]
        assert await kinds_of(db, boss.user.id) == []
        # Relaying again writes nothing twice.
        await relay(test_maker)
        assert len(await kinds_of(db, me.user.id)) == 3

        listed = await client.get(URL, headers=me.headers)
        assert listed.status_code == 200
        assert listed.json()["items"][0]["title"] == "Deal won: Big"
        count = await client.get(f"{URL}/unread-count", headers=me.headers)
        assert count.status_code == 200
        assert count.json() == {"unread": 3}
        await client.post(f"{URL}/read-all", headers=me.headers)
        assert (await client.get(f"{URL}/unread-count", headers=me.headers)).json() == {"unread": 0}


class TestPreferences:
    async def test_defaults_replace_and_muting(
        self,
        client: AsyncClient,
        factory: Factory,
        db: AsyncSession,
        test_maker: async_sessionmaker[AsyncSession],
    ) -> None:
        boss = await factory.actor("admin")
        me = await colleague(factory, db, boss)
        got = await client.get(f"{URL}/preferences", headers=me.headers)
        assert got.status_code == 200
        assert got.json()["language"] == "en"
        assert got.json()["kinds"]["task_assigned"] == {"in_app": True, "email": False}
        put = await client.put(
            f"{URL}/preferences",
            json={"language": "ru", "kinds": {"task_assigned": {"in_app": False, "email": True}}},
            headers=me.headers,
        )
        assert put.status_code == 200, put.text
        assert put.json()["language"] == "ru"
        assert put.json()["kinds"]["task_assigned"] == {"in_app": False, "email": True}
        assert put.json()["kinds"]["deal_won"] == {"in_app": True, "email": False}
        db.expunge_all()
        pref = await db.get(NotificationPreference, me.user.id)
        assert pref is not None
        assert (pref.muted_kinds, pref.email_kinds) == (["task_assigned"], ["task_assigned"])
        user = await db.get(User, me.user.id)
        assert user is not None
        assert user.language == "ru"

        # A muted kind is stored already read (not counted, not pushed live).
        await client.post(
            "/api/v1/tasks", json={"title": "Call", "assignee_id": me.user.id}, headers=boss.headers
        )
        await relay(test_maker)
        assert (await client.get(f"{URL}/unread-count", headers=me.headers)).json() == {"unread": 0}
        assert await kinds_of(db, me.user.id) == ["task_assigned"]

    @pytest.mark.parametrize(
        "body",
        [
            {"kinds": {"no_such_kind": {"in_app": True}}},
            {"language": "de"},
            {"kinds": {"deal_won": {"in_app": "maybe"}}},
            {"kinds": {"deal_won": {"sms": True}}},
        ],
    )
    async def test_bad_input_is_422_and_nothing_stored(
        self, client: AsyncClient, factory: Factory, db: AsyncSession, body: dict[str, Any]
    ) -> None:
        me = await factory.actor("member")
        response = await client.put(f"{URL}/preferences", json=body, headers=me.headers)
        assert_problem(response, 422, "validation_error")
        assert await db.get(NotificationPreference, me.user.id) is None


class TestReminders:
    async def test_due_soon_and_overdue_once_each(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        me = await factory.actor("manager")
        assert me.org_id is not None
        now = datetime.now(UTC)
        soon = Task(
            organization_id=me.org_id, title="Soon", assignee_id=me.user.id, due_date=now + timedelta(hours=3)
        )
        late = Task(
            organization_id=me.org_id, title="Late", assignee_id=me.user.id, due_date=now - timedelta(hours=3)
        )
        far = Task(
            organization_id=me.org_id, title="Far", assignee_id=me.user.id, due_date=now + timedelta(days=3)
        )
        done = Task(
            organization_id=me.org_id, title="Done", assignee_id=me.user.id, due_date=now, status="done"
        )
        db.add_all([soon, late, far, done])
        await db.flush()
        assert await send_reminders(db, now) == 2
        assert await send_reminders(db, now) == 0
        rows = (await db.scalars(select(Notification).where(Notification.user_id == me.user.id))).all()
        assert sorted((r.kind, r.entity_id) for r in rows) == [
            ("task_due", soon.id),
            ("task_overdue", late.id),
        ]
        # Later the due-soon task is overdue: that is a new kind, told once.
        assert await send_reminders(db, now + timedelta(hours=4)) == 1
        assert await send_reminders(db, now + timedelta(hours=5)) == 0
        # A new due date is a new reminder.
        soon.due_date = now + timedelta(hours=10)
        await db.flush()
        assert await send_reminders(db, now + timedelta(hours=5)) == 1

    async def test_two_concurrent_runs_notify_once(self, app: Any, committing_client: AsyncClient) -> None:
        maker = app.state.sessionmaker
        async with maker() as session:
            user = await make_user(session)
            org = await make_org(session)
            await add_member(session, org, user, "manager")
            now = datetime.now(UTC)
            session.add_all(
                Task(
                    organization_id=org.id,
                    title=f"T{n}",
                    assignee_id=user.id,
                    due_date=now + timedelta(hours=n),
                )
                for n in range(1, 6)
            )
            await session.commit()

        async def run() -> int:
            async with maker() as session:
                written = await send_reminders(session, now)
                await session.commit()
                return written

        results = await asyncio.gather(run(), run(), run())
        assert sum(results) == 5
        async with maker() as session:
            total = await session.scalar(
                select(func.count()).select_from(Notification).where(Notification.user_id == user.id)
            )
            assert total == 5
            await session.execute(delete(Task))
            await session.commit()


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content)
        message["X-Rcpt"] = ",".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[_Inbox]:
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=SMTP_PORT)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()


@pytest.fixture
def email_worker(
    settings: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, override_settings: Any
) -> Iterator[Worker]:
    """A real Celery worker process that sends through the local SMTP server."""
    smtp_url = f"smtp://127.0.0.1:{SMTP_PORT}?from=crm@example.com"
    monkeypatch.setenv("SMTP_URL", smtp_url)
    override_settings(smtp_url=smtp_url)
    with celery_worker(settings, tmp_path, name="email-test") as worker:
        yield worker


def _parts(message: Message) -> dict[str, str]:
    out = {}
    for part in message.walk():
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            out[part.get_content_subtype()] = payload.decode(part.get_content_charset() or "utf-8")
    return out


class TestEmail:
    async def test_sent_in_the_users_language_with_text_and_html(
        self,
        client: AsyncClient,
        factory: Factory,
        db: AsyncSession,
        test_maker: async_sessionmaker[AsyncSession],
        smtp: _Inbox,
        email_worker: Worker,
    ) -> None:
        boss = await factory.actor("admin")
        ru = await colleague(factory, db, boss)
        en = await colleague(factory, db, boss)
        for who, lang in ((ru, "ru"), (en, "en")):
            put = await client.put(
                f"{URL}/preferences",
                json={"language": lang, "kinds": {"task_assigned": {"in_app": True, "email": True}}},
                headers=who.headers,
            )
            assert put.status_code == 200
        quiet = await colleague(factory, db, boss)
        for who in (ru, en, quiet):
            await client.post(
                "/api/v1/tasks", json={"title": "Позвонить", "assignee_id": who.user.id}, headers=boss.headers
            )
        await relay(test_maker)
        for _ in range(300):
            if len(smtp.messages) >= 2:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        by_rcpt = {m["X-Rcpt"]: m for m in smtp.messages}
        assert set(by_rcpt) == {ru.user.email, en.user.email}, email_worker.log()
        ru_mail = by_rcpt[ru.user.email]
        assert str(ru_mail["Subject"]).startswith("=?utf-8?") or "Вам назначена" in str(ru_mail["Subject"])
        parts = _parts(ru_mail)
        assert "Вам назначена задача: Позвонить" in parts["plain"]
        assert "Здравствуйте" in parts["plain"]
        assert '<html lang="ru">' in parts["html"]
        en_parts = _parts(by_rcpt[en.user.email])
        assert "Task assigned to you: Позвонить" in en_parts["plain"]
        assert "Hello" in en_parts["plain"]
