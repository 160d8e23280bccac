"""`on_status_changed`: in-app notifications for the team and an email to the client, delivered by the
`notifications.send_email` job to a real SMTP server (aiosmtpd) after commit."""

from __future__ import annotations

import email
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.core.db import run_after_commit
from crm.models import Company, Contact, Industry, Notification, Organization, Project, ProjectMember
from crm.notifications.jobs import send_email, send_email_body
from crm.notifications.live import publish
from crm.projects.notify import on_status_changed
from crm.worker.app import celery_app
from tests.factories import Actor, Factory, add_member, make_user
from tests.support.helpers import make_project, org_of


@dataclass
class Inbox:
    """What the local SMTP server received."""

    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=default_policy)
        assert isinstance(message, EmailMessage)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, str]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, f"smtp://127.0.0.1:{port}?from=agency%40example.org"
    finally:
        controller.stop()


@pytest.fixture
def eager_jobs() -> Iterator[None]:
    """Jobs sent with `apply_async` run at once in this process (Celery's eager mode)."""
    saved = (celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates)
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    try:
        yield
    finally:
        celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = saved


@dataclass
class Team:
    actor: Actor
    org_id: int
    project: Project
    curator_id: int
    editor_id: int
    viewer_id: int
    inactive_id: int


@pytest.fixture
async def team(factory: Factory, db: AsyncSession) -> Team:
    actor = await factory.actor("manager")
    org_id = org_of(actor)
    org = await db.get(Organization, org_id)
    assert org is not None
    curator = await make_user(db)
    editor = await make_user(db)
    viewer = await make_user(db)
    inactive = await make_user(db, is_active=False)
    outsider = await make_user(db)  # on the team but no longer a member of the organization
    for user in (curator, editor, viewer, inactive):
        await add_member(db, org, user, "member")
    client = Company(organization_id=org_id, name="ООО «Ромашка»", email="office@romashka.example")
    db.add(client)
    await db.flush()
    project = await make_project(
        db, org_id, name="Гостиница «Заря»", curator_id=curator.id, client_id=client.id, external_code="INV-7"
    )
    for user, role in ((editor, "editor"), (viewer, "viewer"), (actor.user, "editor"), (inactive, "viewer")):
        db.add(ProjectMember(organization_id=org_id, project_id=project.id, user_id=user.id, role=role))
    db.add(ProjectMember(organization_id=org_id, project_id=project.id, user_id=outsider.id, role="viewer"))
    await db.commit()
    return Team(actor, org_id, project, curator.id, editor.id, viewer.id, inactive.id)


async def notifications(db: AsyncSession) -> list[Notification]:
    db.expunge_all()
    return list(await db.scalars(select(Notification).order_by(Notification.user_id)))


class TestInApp:
    async def test_the_team_and_the_curator_but_not_the_actor_are_notified(
        self, db: AsyncSession, team: Team, override_settings: Any
    ) -> None:
        override_settings(smtp_url=None)
        await on_status_changed(
            db,
            project=team.project,
            from_status="in_committee",
            to_status="submitted",
            actor_id=team.actor.user.id,
            comment="Доработать бизнес-план",
        )
        rows = await notifications(db)
        assert sorted(r.user_id for r in rows) == sorted([team.curator_id, team.editor_id, team.viewer_id])
        for row in rows:
            assert row.organization_id == team.org_id
            assert row.kind == "project_status_changed"
            assert row.entity_type == "project"
            assert row.entity_id == team.project.id
            assert row.title == "Project «Гостиница «Заря»»: in committee → submitted"
            assert row.body == "Доработать бизнес-план"
            assert row.data == {
                "from_status": "in_committee",
                "to_status": "submitted",
                "actor_id": team.actor.user.id,
                "comment": "Доработать бизнес-план",
            }
            assert row.read_at is None
        # Only the live push is queued: no email without SMTP_URL.
        assert {fn for fn, _ in db.info.get("on_commit", [])} <= {publish}

    async def test_a_curator_moving_it_is_not_notified(
        self, db: AsyncSession, team: Team, override_settings: Any
    ) -> None:
        override_settings(smtp_url=None)
        await on_status_changed(
            db,
            project=team.project,
            from_status="draft",
            to_status="submitted",
            actor_id=team.curator_id,
            comment=None,
        )
        assert sorted(r.user_id for r in await notifications(db)) == sorted(
            [team.editor_id, team.viewer_id, team.actor.user.id]
        )


class TestEmail:
    async def test_the_clients_first_contact_gets_an_email_after_commit(
        self,
        db: AsyncSession,
        team: Team,
        override_settings: Any,
        smtp_server: tuple[Inbox, str],
        eager_jobs: None,
    ) -> None:
        inbox, url = smtp_server
        override_settings(smtp_url=url)
        gone = Contact(
            organization_id=team.org_id,
            full_name="Удалённый",
            email="gone@romashka.example",
            company_id=team.project.client_id,
            deleted_at=datetime.now(UTC),
        )
        no_email = Contact(
            organization_id=team.org_id, full_name="Без почты", company_id=team.project.client_id
        )
        db.add_all([gone, no_email])
        await db.flush()
        first = Contact(
            organization_id=team.org_id,
            full_name="Иван Петров",
            email="ivan@romashka.example",
            company_id=team.project.client_id,
        )
        db.add(first)
        await db.flush()
        db.add(
            Contact(
                organization_id=team.org_id,
                full_name="Второй",
                email="second@romashka.example",
                company_id=team.project.client_id,
            )
        )
        await db.flush()
        await on_status_changed(
            db,
            project=team.project,
            from_status="submitted",
            to_status="in_committee",
            actor_id=team.actor.user.id,
            comment=None,
        )
        assert inbox.messages == []  # nothing leaves before the commit
        await db.commit()
        await run_after_commit(db)
        [(sender, recipients, message)] = inbox.messages
        assert sender == "agency@example.org"
        assert recipients == ["ivan@romashka.example"]
        assert message["To"] == "ivan@romashka.example"
        assert message["Subject"] == "Project «Гостиница «Заря»»: status changed to in committee"
        text = message.get_content()
        assert "Гостиница «Заря»" in text
        assert "from submitted to in committee" in text
        assert "INV-7" in text

    async def test_without_a_contact_the_companys_email_is_used(
        self,
        db: AsyncSession,
        team: Team,
        override_settings: Any,
        smtp_server: tuple[Inbox, str],
        eager_jobs: None,
    ) -> None:
        inbox, url = smtp_server
        override_settings(smtp_url=url)
        await on_status_changed(
            db,
            project=team.project,
            from_status="in_committee",
            to_status="rejected",
            actor_id=team.actor.user.id,
            comment="Не соответствует условиям программы",
        )
        await db.commit()
        await run_after_commit(db)
        [(_, recipients, message)] = inbox.messages
        assert recipients == ["office@romashka.example"]
        assert "rejected" in message["Subject"]
        assert "Не соответствует условиям программы" in message.get_content()

    async def test_a_rolled_back_move_sends_nothing(
        self,
        db: AsyncSession,
        team: Team,
        override_settings: Any,
        smtp_server: tuple[Inbox, str],
        eager_jobs: None,
    ) -> None:
        inbox, url = smtp_server
        override_settings(smtp_url=url)
        await on_status_changed(
            db, project=team.project, from_status="draft", to_status="submitted", actor_id=None, comment=None
        )
        await db.rollback()
        await run_after_commit(db)
        assert inbox.messages == []

    async def test_no_smtp_url_or_no_client_email_means_no_email(
        self, db: AsyncSession, team: Team, override_settings: Any
    ) -> None:
        override_settings(smtp_url=None)
        await on_status_changed(
            db, project=team.project, from_status="draft", to_status="submitted", actor_id=None, comment=None
        )
        assert {fn for fn, _ in db.info.get("on_commit", [])} <= {publish}
        override_settings(smtp_url="smtp://127.0.0.1:1")
        company = await db.get(Company, team.project.client_id)
        assert company is not None
        company.email = None
        await db.flush()
        await on_status_changed(
            db, project=team.project, from_status="draft", to_status="submitted", actor_id=None, comment=None
        )
        assert {fn for fn, _ in db.info.get("on_commit", [])} <= {publish}


class TestThroughTheApi:
    async def test_a_status_move_notifies_the_team_and_emails_the_client(
        self,
        client: AsyncClient,
        db: AsyncSession,
        team: Team,
        override_settings: Any,
        smtp_server: tuple[Inbox, str],
        eager_jobs: None,
    ) -> None:
        inbox, url = smtp_server
        override_settings(smtp_url=url)
        project = await db.get(Project, team.project.id)
        assert project is not None
        industry = Industry(organization_id=team.org_id, name="Туризм")
        db.add(industry)
        await db.flush()
        project.industry_id = industry.id
        project.own_funds_amount = Decimal("1000000.00")
        project.requested_support_amount = Decimal("500000.00")
        await db.commit()
        response = await client.post(
            f"/api/v1/projects/{team.project.id}/status",
            json={"status": "submitted"},
            headers=team.actor.headers,
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "submitted"
        rows = await notifications(db)
        assert sorted(r.user_id for r in rows) == sorted([team.curator_id, team.editor_id, team.viewer_id])
        [(_, recipients, message)] = inbox.messages
        assert recipients == ["office@romashka.example"]
        assert "from draft to submitted" in message.get_content()


class TestJob:
    def test_the_job_body_delivers_one_message(self, smtp_server: tuple[Inbox, str]) -> None:
        inbox, url = smtp_server
        assert send_email_body("client@example.org", "Тема", "Текст письма", smtp_url=url) is True
        [(sender, recipients, message)] = inbox.messages
        assert (sender, recipients) == ("agency@example.org", ["client@example.org"])
        assert message["Subject"] == "Тема"
        assert message.get_content().rstrip() == "Текст письма"

    def test_email_off_sends_nothing(self, override_settings: Any) -> None:
        override_settings(smtp_url=None)
        assert send_email_body("client@example.org", "s", "b") is False

    def test_an_unreachable_server_raises_so_the_job_retries(self) -> None:
        port = free_port()  # nothing listens there
        with pytest.raises(ConnectionRefusedError):
            send_email_body("client@example.org", "s", "b", smtp_url=f"smtp://127.0.0.1:{port}")
        assert send_email.name == "notifications.send_email"
        assert OSError in send_email.autoretry_for
        assert send_email.retry_backoff
