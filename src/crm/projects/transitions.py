"""Status models as data: a table of moves, who may make them and their guards.

`StateMachine` is generic over a context `C` (whatever the guards need to look at: the record, the
session, the caller). The projects' table (PROJECTS.md "Status model") is `PROJECT_STATUSES` below;
another record with a status model declares its own table and reuses the machine.

Answers, in this order: the caller may not move the record's status at all → 403; the move is not in
the table from the current status → 409 `illegal_transition` with `allowed` (the table's targets from
here); a move needing a comment got none → 422; an unmet guard → 409 `transition_guard_failed` with
`reasons`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.core.errors import Conflict, Forbidden
from crm.models import Project, SupportDecision, SupportMeasure
from crm.records.fields import invalid_field

C = TypeVar("C")


@dataclass(frozen=True)
class Guard(Generic[C]):
    """A condition on stored data; `reason` explains it when it does not hold."""

    reason: str
    holds: Callable[[C], Awaitable[bool]]


@dataclass(frozen=True)
class Move(Generic[C]):
    source: str
    target: str
    guards: tuple[Guard[C], ...] = ()
    comment_required: bool = False
    #: Whether the move exists for this record at all (e.g. a resume only to where it came from).
    applies: Callable[[C], bool] | None = None


@dataclass(frozen=True)
class Option:
    """A move from the current status as the caller sees it."""

    to: str
    allowed: bool
    reasons: list[str]
    comment_required: bool


class IllegalTransition(Conflict):
    code = "illegal_transition"


class TransitionGuardFailed(Conflict):
    code = "transition_guard_failed"


class StatusMoveForbidden(Forbidden):
    pass


@dataclass(frozen=True)
class StateMachine(Generic[C]):
    states: tuple[str, ...]
    moves: tuple[Move[C], ...]
    finals: frozenset[str]
    #: Who may move statuses (for any move of the table).
    may_move: Callable[[C], Awaitable[bool]]
    forbidden_reason: str

    def __post_init__(self) -> None:
        for move in self.moves:
            if move.source not in self.states or move.target not in self.states:
                raise ValueError(f"unknown status in {move}")
            if move.source in self.finals:
                raise ValueError(f"{move.source} is final and has no moves")

    def moves_from(self, current: str, ctx: C) -> list[Move[C]]:
        return [m for m in self.moves if m.source == current and (m.applies is None or m.applies(ctx))]

    def targets(self, current: str, ctx: C) -> list[str]:
        return [m.target for m in self.moves_from(current, ctx)]

    @staticmethod
    async def unmet(move: Move[C], ctx: C) -> list[str]:
        return [g.reason for g in move.guards if not await g.holds(ctx)]

    async def options(self, current: str, ctx: C) -> list[Option]:
        """Every move from `current`, allowed or not for this caller, with the reasons why not."""
        permitted = await self.may_move(ctx)
        out = []
        for move in self.moves_from(current, ctx):
            reasons = [] if permitted else [self.forbidden_reason]
            reasons += await self.unmet(move, ctx)
            out.append(Option(move.target, not reasons, reasons, move.comment_required))
        return out

    async def check(self, current: str, target: str, ctx: C, comment: str | None) -> Move[C]:
        """The move from `current` to `target`, or the error that refuses it."""
        if not await self.may_move(ctx):
            raise StatusMoveForbidden(self.forbidden_reason)
        moves = self.moves_from(current, ctx)
        move = next((m for m in moves if m.target == target), None)
        if move is None:
            allowed = [m.target for m in moves]
            raise IllegalTransition(
                f"Cannot move from {current} to {target}; allowed: {', '.join(allowed)}"
                if allowed
                else f"Cannot move from {current} to {target}; {current} is final",
                current=current,
                allowed=allowed,
            )
        if move.comment_required and not (comment and comment.strip()):
            raise invalid_field("comment", f"required to move from {current} to {target}", "missing")
        reasons = await self.unmet(move, ctx)
        if reasons:
            raise TransitionGuardFailed("; ".join(reasons), current=current, target=target, reasons=reasons)
        return move


# The projects' status model -------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectContext:
    """What the project guards look at: the locked project row, the session and the caller."""

    db: AsyncSession
    project: Project
    can_status: bool  # holds `projects:status`
    team_role: str | None  # the caller's role on the project's team


async def _may_move(ctx: ProjectContext) -> bool:
    return ctx.can_status or ctx.team_role in ("curator", "editor")


def _filled(field: str) -> Callable[[ProjectContext], Awaitable[bool]]:
    async def holds(ctx: ProjectContext) -> bool:
        return getattr(ctx.project, field) is not None

    return holds


async def _has_approved_support(ctx: ProjectContext) -> bool:
    project_id = ctx.project.id
    approving_decision = exists().where(
        SupportDecision.support_id == SupportMeasure.id, SupportDecision.result == "approved"
    )
    stmt = select(
        exists().where(
            SupportMeasure.project_id == project_id,
            or_(SupportMeasure.status.in_(("approved", "provided")), approving_decision),
        )
    )
    return bool(await ctx.db.scalar(stmt))


def _resumes_to(status: str) -> Callable[[ProjectContext], bool]:
    """A frozen project resumes only to the status it was frozen from (`submitted` if unknown)."""

    def applies(ctx: ProjectContext) -> bool:
        return (ctx.project.frozen_from or "submitted") == status

    return applies


COMPLETE_APPLICATION = (
    Guard[ProjectContext]("client is required", _filled("client_id")),
    Guard[ProjectContext]("industry is required", _filled("industry_id")),
    Guard[ProjectContext]("own_funds_amount is required", _filled("own_funds_amount")),
    Guard[ProjectContext]("requested_support_amount is required", _filled("requested_support_amount")),
)
APPROVED_SUPPORT = Guard[ProjectContext](
    "at least one support measure must have an approving decision", _has_approved_support
)

M = Move[ProjectContext]
PROJECT_STATUSES = StateMachine[ProjectContext](
    states=(
        "draft",
        "submitted",
        "in_committee",
        "supported",
        "completed",
        "archived",
        "frozen",
        "rejected",
        "withdrawn",
    ),
    moves=(
        M("draft", "submitted", guards=COMPLETE_APPLICATION),
        M("draft", "withdrawn"),
        M("submitted", "in_committee"),
        M("in_committee", "supported", guards=(APPROVED_SUPPORT,)),
        M("in_committee", "submitted", comment_required=True),
        M("in_committee", "rejected", comment_required=True),
        M("submitted", "completed"),
        M("submitted", "archived"),
        M("submitted", "frozen"),
        M("supported", "completed"),
        M("supported", "archived"),
        M("supported", "frozen"),
        M("frozen", "submitted", applies=_resumes_to("submitted")),
        M("frozen", "supported", applies=_resumes_to("supported")),
    ),
    finals=frozenset({"completed", "archived", "rejected", "withdrawn"}),
    may_move=_may_move,
    forbidden_reason=(
        "changing the status needs the 'projects:status' permission or the curator or editor role "
        "on the project's team"
    ),
)
#: The status of a project created through the API.
INITIAL_STATUS = "draft"
