"""Task reminders (beat): each assignee hears once per task and kind that a task is due within
24 hours and, later, that it is overdue. The notification's dedupe key carries the task, the kind and
the due date, so two beats, a re-run or a crash midway never remind twice; moving the due date
makes a new reminder possible."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Task, User
from crm.notifications.service import notify_users
from crm.worker.app import celery_app
from crm.worker.runtime import job_session, run_async

DUE_SOON = timedelta(hours=24)
#: Overdue tasks older than this are not reminded any more (a new install does not spam years of them).
OVERDUE_HORIZON = timedelta(days=30)
BATCH = 1000


def dedupe_key(task_id: int, kind: str, due: datetime) -> str:
    return f"{kind}:{task_id}:{due.astimezone(UTC).strftime('%Y%m%dT%H%M%S')}"


async def send_reminders(session: AsyncSession, now: datetime | None = None) -> int:
    """Notify assignees of open tasks due within 24 h (`task_due`) or overdue (`task_overdue`);
    returns how many notifications were written (those already sent are skipped)."""
    now = now or datetime.now(UTC)
    rows = (
        await session.execute(
            select(Task.id, Task.organization_id, Task.assignee_id, Task.title, Task.due_date)
            .join(User, User.id == Task.assignee_id)
            .where(
                Task.status.not_in(("done", "cancelled")),
                Task.assignee_id.is_not(None),
                Task.due_date.is_not(None),
                Task.due_date <= now + DUE_SOON,
                Task.due_date > now - OVERDUE_HORIZON,
                User.is_active.is_(True),
            )
            .order_by(Task.due_date)
            .limit(BATCH * 10)
        )
    ).all()
    written = 0
    for task_id, organization_id, assignee_id, title, due in rows:
        overdue = due <= now
        kind = "task_overdue" if overdue else "task_due"
        text = f"Task overdue: {title}" if overdue else f"Task due within 24 hours: {title}"
        written += await notify_users(
            session,
            organization_id=organization_id,
            user_ids=[assignee_id],
            kind=kind,
            title=text,
            entity_type="task",
            entity_id=task_id,
            data={"task_id": task_id, "due_date": due.isoformat().replace("+00:00", "Z"), "name": title},
            dedupe_key=dedupe_key(task_id, kind, due),
        )
    return written


async def _run() -> int:
    async with job_session() as session:
        return await send_reminders(session)


@celery_app.task(name="notifications.task_reminders", acks_late=True, soft_time_limit=240, time_limit=280)
def task_reminders() -> int:
    """Beat: remind assignees of tasks due soon and overdue (once per task and kind)."""
    return run_async(_run())
