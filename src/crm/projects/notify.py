"""What happens around a project status move besides the move itself: in-app notifications for the
project team and an email to the client's contact (sent by a job after commit)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Project


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
    return None
