"""What happens around a project status move besides the move itself: in-app notifications for the
project team and an email to the client's contact (sent by a job after commit)."""

from __future__ import annotations

import asyncio

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.config import get_settings
from crm.core.db import on_commit
from crm.models import Company, Contact, Membership, Project, ProjectMember, User
from crm.notifications.jobs import send_email
from crm.notifications.service import notify_users

log = structlog.get_logger(__name__)

KIND = "project_status_changed"
#: How statuses read in messages to people.
STATUS_LABELS = {
    "draft": "draft",
    "submitted": "submitted",
    "in_committee": "in committee",
    "supported": "supported",
    "rejected": "rejected",
    "completed": "completed",
    "archived": "archived",
    "frozen": "frozen",
    "withdrawn": "withdrawn",
}


def status_label(status: str | None) -> str:
    return STATUS_LABELS.get(status or "", status or "new")


async def team_recipients(session: AsyncSession, project: Project, actor_id: int | None) -> list[int]:
    """The project's team and curator who are still active members of the organization, minus the actor."""
    team = select(ProjectMember.user_id).where(
        ProjectMember.project_id == project.id, ProjectMember.organization_id == project.organization_id
    )
    candidates = set(await session.scalars(team))
    if project.curator_id is not None:
        candidates.add(project.curator_id)
    candidates.discard(actor_id)
    if not candidates:
        return []
    active = await session.scalars(
        select(Membership.user_id)
        .join(User, User.id == Membership.user_id)
        .where(
            Membership.organization_id == project.organization_id,
            Membership.user_id.in_(candidates),
            User.is_active.is_(True),
        )
    )
    return sorted(set(active))


async def client_email(session: AsyncSession, project: Project) -> str | None:
    """The first live contact of the client company that has an email, else the company's own email."""
    if project.client_id is None:
        return None
    contact_email = await session.scalar(
        select(Contact.email)
        .where(
            Contact.organization_id == project.organization_id,
            Contact.company_id == project.client_id,
            Contact.deleted_at.is_(None),
            Contact.email.is_not(None),
            Contact.email != "",
        )
        .order_by(Contact.created_at, Contact.id)
        .limit(1)
    )
    if contact_email:
        return contact_email
    company_email = await session.scalar(
        select(Company.email).where(
            Company.id == project.client_id,
            Company.organization_id == project.organization_id,
            Company.deleted_at.is_(None),
        )
    )
    return company_email or None


def email_text(
    project: Project, from_status: str | None, to_status: str, comment: str | None
) -> tuple[str, str]:
    """Subject and body of the email to the client."""
    name = project.name
    subject = f"Project «{name}»: status changed to {status_label(to_status)}"
    lines = [
        "Hello,",
        "",
        f"The status of your project «{name}» has changed "
        f"from {status_label(from_status)} to {status_label(to_status)}.",
    ]
    if project.external_code:
        lines.append(f"Project code: {project.external_code}.")
    if comment:
        lines += ["", f"Comment: {comment}"]
    lines += ["", "This message was sent automatically; please do not reply to it."]
    return subject, "\n".join(lines) + "\n"


async def enqueue_email(to: str, subject: str, body: str) -> None:
    """Hand the email to the worker (a blocking broker call, kept off the event loop)."""
    await asyncio.to_thread(send_email.apply_async, kwargs={"to": to, "subject": subject, "body": body})


async def on_status_changed(
    session: AsyncSession,
    *,
    project: Project,
    from_status: str | None,
    to_status: str,
    actor_id: int | None,
    comment: str | None,
) -> None:
    """Called by the projects service in the transaction of the move (not for imported statuses)."""
    title = f"Project «{project.name}»: {status_label(from_status)} → {status_label(to_status)}"
    recipients = await team_recipients(session, project, actor_id)
    await notify_users(
        session,
        organization_id=project.organization_id,
        user_ids=recipients,
        kind=KIND,
        title=title[:300],
        body=comment,
        entity_type="project",
        entity_id=project.id,
        data={"from_status": from_status, "to_status": to_status, "actor_id": actor_id, "comment": comment},
    )
    if not get_settings().smtp_url:
        return
    to = await client_email(session, project)
    if to is None:
        return
    subject, body = email_text(project, from_status, to_status, comment)
    on_commit(session, enqueue_email, to, subject, body)
    log.info("project_status_email_queued", project_id=project.id)
