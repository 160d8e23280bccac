"""The projects' status model (PROJECTS.md "Status model"), declared as data for `records/states.py`.

Who may: `projects:status`, or the curator or editor role on the project's team. The moves, their
guards (a complete application; an approving decision) and required comments are the table below;
`frozen` remembers the status it was frozen from and resumes only to it. Every move is recorded in
`project_status_history` by `ProjectService.move` (imports record theirs with the comment `imported`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Project, SupportDecision, SupportMeasure
from crm.records.states import Guard, Move, State, StateMachine, plain


@dataclass(frozen=True)
class ProjectContext:
    """What the project guards look at: the locked project row, the session and the caller."""

    db: AsyncSession
    project: Project
    permissions: frozenset[str]
    team_role: str | None  # the caller's role on the project's team

    def can(self, permission: str, /) -> bool:
        return permission in self.permissions


def _may_move(ctx: ProjectContext) -> bool:
    return ctx.can("projects:status") or ctx.team_role in ("curator", "editor")


def _filled(field: str) -> Guard[ProjectContext]:
    """`client is required` for `client_id`, and so on."""
    name = field.removesuffix("_id")
    return Guard(f"{name} is required", lambda ctx: getattr(ctx.project, field) is not None)


async def _has_approved_support(ctx: ProjectContext) -> bool:
    approving_decision = exists().where(
        SupportDecision.support_id == SupportMeasure.id, SupportDecision.result == "approved"
    )
    stmt = select(
        exists().where(
            SupportMeasure.project_id == ctx.project.id,
            or_(SupportMeasure.status.in_(("approved", "provided")), approving_decision),
        )
    )
    return bool(await ctx.db.scalar(stmt))


def _resumes_to(status: str) -> Callable[[ProjectContext], bool]:
    """A frozen project resumes only to the status it was frozen from (`submitted` if unknown)."""
    return lambda ctx: (ctx.project.frozen_from or "submitted") == status


COMPLETE_APPLICATION = (
    _filled("client_id"),
    _filled("industry_id"),
    _filled("own_funds_amount"),
    _filled("requested_support_amount"),
)
APPROVED_SUPPORT = Guard[ProjectContext](
    "at least one support measure must have an approving decision", _has_approved_support
)

M = Move[ProjectContext]
PROJECT_STATUSES = StateMachine[ProjectContext](
    noun="project",
    states=(
        *plain("draft", "submitted", "in_committee", "supported"),
        State("completed", final=True),
        State("archived", final=True),
        State("frozen", remembers_source="frozen_from"),
        State("rejected", final=True),
        State("withdrawn", final=True),
    ),
    moves=(
        M("draft", "submitted", guards=COMPLETE_APPLICATION),
        M("draft", "withdrawn"),
        M("submitted", "in_committee"),
        M("in_committee", "supported", guards=(APPROVED_SUPPORT,)),
        M("in_committee", "submitted", required=("comment",)),
        M("in_committee", "rejected", required=("comment",)),
        M("submitted", "completed"),
        M("submitted", "archived"),
        M("submitted", "frozen"),
        M("supported", "completed"),
        M("supported", "archived"),
        M("supported", "frozen"),
        M("frozen", "submitted", applies=_resumes_to("submitted")),
        M("frozen", "supported", applies=_resumes_to("supported")),
    ),
    may=_may_move,
    forbidden_reason=(
        "changing the status needs the 'projects:status' permission or the curator or editor role "
        "on the project's team"
    ),
)
#: The status of a project created through the API.
INITIAL_STATUS = "draft"
