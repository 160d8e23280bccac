"""Status models as data, and the one engine that runs them (deals, projects, support measures).

A record type declares its model once (`deals/transitions.py`, `projects/transitions.py`,
`support/transitions.py`):

- **States** (`State`): which are final, the fields only a state keeps (required in it, refused when
  sent for another state and cleared there, e.g. a lost deal's `lost_reason`), the timestamp a state
  stamps when it is entered (cleared in the states that do not stamp it, e.g. `closed_at`), the field
  that remembers where the record came from (`frozen_from`), and invariants: guards that hold while the
  record is in the state, checked when it enters it or when their field changes (a won deal's amount).
- **Moves** (`Move`): from → to (`ANY` for every state), who may (the model's `may` and the move's
  `permission`), guards on stored data, fields the move needs (a comment), and when it applies.

Two entry points, with different reach:

- `check` — a move asked for through the API: who may (403), the table (409 `illegal_transition` with
  `allowed`, or the state's own refusal), the move's permission (403), its required fields (422), its
  guards (their own error, or 409 `transition_guard_failed` with `reasons`).
- `settle` — the states' rules on a write: every API write of the record and every imported row run it,
  so both refuse the same rows with the same code and message. Imports set a status directly: moves
  (who may, guards, the table) are not theirs to check (`docs/imports.md`).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Generic, Protocol, TypeVar

from crm.core.errors import AppError, Conflict, Forbidden
from crm.records.fields import invalid_field

#: A move's source or target that stands for every state.
ANY = "*"


class Actor(Protocol):
    """What a move's context must answer: whether the caller holds a permission."""

    def can(self, permission: str, /) -> bool: ...


C = TypeVar("C", bound=Actor)
C_contra = TypeVar("C_contra", contravariant=True)


class IllegalTransition(Conflict):
    code = "illegal_transition"


class TransitionGuardFailed(Conflict):
    code = "transition_guard_failed"


class StatusMoveForbidden(Forbidden):
    pass


@dataclass(frozen=True)
class Guard(Generic[C_contra]):
    """A condition; `reason` explains it when it does not hold.

    `error` is the refusal when the guard has one of its own (e.g. 409 `deal_amount_zero`); without
    one, the unmet guards of a move are answered together as 409 `transition_guard_failed`. `field`
    names the field the guard is about (an import reports the row's error in that column)."""

    reason: str
    holds: Callable[[C_contra], bool | Awaitable[bool]]
    error: Callable[[], AppError] | None = None
    field: str | None = None


@dataclass(frozen=True)
class Invariant:
    """A rule on a record's values that holds while it is in a state (a won deal has an amount).

    Checked when the record enters the state, and when `field` changes while it is in it."""

    reason: str
    holds: Callable[[Mapping[str, Any]], bool]
    error: Callable[[], AppError]
    field: str | None = None


@dataclass(frozen=True)
class State:
    name: str
    final: bool = False
    #: Fields only this state keeps: required in it, cleared (and refused when sent) in the others.
    keeps: tuple[str, ...] = ()
    #: A timestamp set when the record enters this state; states that do not stamp it clear it.
    stamps: str | None = None
    #: A field that stores the state the record came from while it is in this one.
    remembers_source: str | None = None
    invariants: tuple[Invariant, ...] = ()
    #: The refusal of a move into this state that the table does not have (default: 409
    #: `illegal_transition`); gets the current state.
    refuse_entry: Callable[[str], AppError] | None = None
    #: The refusal of any move out of this (final) state (default: 409 `illegal_transition`).
    refuse_exit: Callable[[str], AppError] | None = None


def plain(*names: str) -> tuple[State, ...]:
    """States with no rules of their own: not final, keeping, stamping and remembering nothing."""
    return tuple(State(name) for name in names)


@dataclass(frozen=True)
class Move(Generic[C]):
    source: str
    target: str
    #: The permission the caller needs for this move, beyond the model's `may`.
    permission: str | None = None
    #: The refusal when the caller lacks `permission` (default: 403 with the permission named).
    forbidden: Callable[[], AppError] | None = None
    guards: tuple[Guard[C], ...] = ()
    #: Fields the request must carry for this move (422 when missing or blank).
    required: tuple[str, ...] = ()
    #: Whether the move exists for this record at all (e.g. a resume only to where it came from).
    applies: Callable[[C], bool] | None = None

    def matches(self, current: str, target: str | None, ctx: C) -> bool:
        return (
            self.source in (ANY, current)
            and (target is None or self.target in (ANY, target))
            and (self.applies is None or self.applies(ctx))
        )


@dataclass(frozen=True)
class Option:
    """A move from the current state as the caller sees it."""

    to: str
    allowed: bool
    reasons: list[str]
    comment_required: bool


@dataclass(frozen=True)
class Broken:
    """A state rule a write breaks: the field it is about and the error the API answers with."""

    field: str | None
    error: AppError


async def _holds(guard: Guard[C], ctx: C) -> bool:
    result = guard.holds(ctx)
    if inspect.isawaitable(result):
        return bool(await result)
    return bool(result)


@dataclass(frozen=True)
class StateMachine(Generic[C]):
    #: The moves, tried in order: the first that matches (source, target, `applies`) is the move.
    moves: tuple[Move[C], ...]
    #: The states; empty when they are data themselves (a pipeline's stages).
    states: tuple[State, ...] = ()
    #: The record's noun in messages ("a lost deal has …").
    noun: str = "record"
    #: Who may move at all (for every move of the table); None: whoever may write the record.
    may: Callable[[C], bool] | None = None
    forbidden_reason: str = "Not allowed to change the status"
    #: A move to the current state changes nothing instead of being looked up.
    same_is_noop: bool = False

    def __post_init__(self) -> None:
        names = {s.name for s in self.states}
        for move in self.moves:
            for end in (move.source, move.target):
                if names and end != ANY and end not in names:
                    raise ValueError(f"unknown state {end!r} in {move}")
            if move.source in self.finals:
                raise ValueError(f"{move.source} is final and has no moves")

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.states)

    @cached_property
    def finals(self) -> frozenset[str]:
        return frozenset(s.name for s in self.states if s.final)

    @cached_property
    def _by_name(self) -> dict[str, State]:
        return {s.name: s for s in self.states}

    @cached_property
    def _stamps(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.stamps for s in self.states if s.stamps))

    def state(self, name: str | None) -> State | None:
        return self._by_name.get(name) if name is not None else None

    # Moves --------------------------------------------------------------------------------------

    def moves_from(self, current: str, ctx: C) -> list[Move[C]]:
        """The moves out of `current` that apply to this record (a final state has none)."""
        if current in self.finals:
            return []
        return [m for m in self.moves if m.matches(current, None, ctx) and m.target != ANY]

    def targets(self, current: str, ctx: C) -> list[str]:
        return [m.target for m in self.moves_from(current, ctx)]

    def find(self, current: str, target: str, ctx: C) -> Move[C] | None:
        if current in self.finals:
            return None
        return next((m for m in self.moves if m.matches(current, target, ctx)), None)

    @staticmethod
    async def unmet(move: Move[C], ctx: C) -> list[str]:
        return [g.reason for g in move.guards if not await _holds(g, ctx)]

    def _permitted(self, move: Move[C], ctx: C) -> bool:
        return move.permission is None or ctx.can(move.permission)

    async def options(self, current: str, ctx: C) -> list[Option]:
        """Every move from `current`, allowed or not for this caller, with the reasons why not."""
        may = self.may is None or self.may(ctx)
        out = []
        for move in self.moves_from(current, ctx):
            reasons = [] if may else [self.forbidden_reason]
            if not self._permitted(move, ctx):
                reasons.append(f"needs the {move.permission!r} permission")
            reasons += await self.unmet(move, ctx)
            out.append(Option(move.target, not reasons, reasons, "comment" in move.required))
        return out

    async def check(
        self, current: str, target: str, ctx: C, sent: Mapping[str, Any] | None = None
    ) -> Move[C] | None:
        """The move from `current` to `target`, or the error that refuses it; None when the target is
        the current state of a model where that changes nothing."""
        if self.may is not None and not self.may(ctx):
            raise StatusMoveForbidden(self.forbidden_reason)
        if self.same_is_noop and current == target:
            return None
        move = self.find(current, target, ctx)
        if move is None:
            raise self._illegal(current, target, ctx)
        if not self._permitted(move, ctx):
            if move.forbidden is not None:
                raise move.forbidden()
            raise Forbidden(f"Moving from {current} to {target} needs the {move.permission!r} permission")
        for name in move.required:
            value = (sent or {}).get(name)
            if value is None or (isinstance(value, str) and not value.strip()):
                raise invalid_field(name, f"required to move from {current} to {target}", "missing")
        reasons: list[str] = []
        for guard in move.guards:
            if not await _holds(guard, ctx):
                if guard.error is not None:
                    raise guard.error()
                reasons.append(guard.reason)
        if reasons:
            raise TransitionGuardFailed("; ".join(reasons), current=current, target=target, reasons=reasons)
        return move

    def _illegal(self, current: str, target: str, ctx: C) -> AppError:
        source, goal = self.state(current), self.state(target)
        if source is not None and source.final and source.refuse_exit is not None:
            return source.refuse_exit(target)
        if goal is not None and goal.refuse_entry is not None:
            return goal.refuse_entry(current)
        allowed = self.targets(current, ctx)
        return IllegalTransition(
            f"Cannot move from {current} to {target}; allowed: {', '.join(allowed)}"
            if allowed
            else f"Cannot move from {current} to {target}; {current} is final",
            current=current,
            allowed=allowed,
        )

    # State rules ----------------------------------------------------------------------------------

    def settle(self, stored: Mapping[str, Any] | None, values: MutableMapping[str, Any]) -> None:
        """Apply the states' rules to a write, in place (see `broken`); raise the first broken rule."""
        broken = self.broken(stored, values)
        if broken is not None:
            raise broken.error

    def broken(
        self,
        stored: Mapping[str, Any] | None,
        values: MutableMapping[str, Any],
        *,
        status_field: str = "status",
        now: datetime | None = None,
    ) -> Broken | None:
        """The states' rules on a write of `values` over the `stored` record (None: a new one), in
        place: kept fields required, refused or cleared; stamps set on entry and cleared elsewhere; the
        source remembered; invariants checked. The first rule broken, or None."""
        old = stored.get(status_field) if stored is not None else None
        name = values.get(status_field) or old
        state = self.state(name)
        if state is None:
            return None
        entered = name != old

        for other in self.states:
            for kept in other.keeps:
                if other is state:
                    if kept in values:
                        reason = values[kept]
                    else:  # kept from the stored record while it stays in the state
                        reason = stored.get(kept) if stored is not None and not entered else None
                    if not reason:
                        message = f"required when the {status_field} is {name}"
                        return Broken(kept, invalid_field(kept, message, "missing"))
                    values[kept] = reason
                elif kept not in state.keeps:
                    if values.get(kept) is not None:
                        message = f"only a {other.name} {self.noun} has a {kept}"
                        return Broken(kept, invalid_field(kept, message))
                    values[kept] = None

        for stamp in self._stamps:
            if state.stamps == stamp:
                if entered:
                    values[stamp] = now or datetime.now(UTC)
            else:
                values[stamp] = None

        for other in self.states:
            if other.remembers_source and entered:
                if other is state:
                    values[other.remembers_source] = old
                elif old == other.name:
                    values[other.remembers_source] = None

        for rule in state.invariants:
            changed = stored is None or entered
            if not changed and stored is not None and rule.field is not None and rule.field in values:
                changed = values[rule.field] != stored.get(rule.field)
            if changed and not rule.holds({**(stored or {}), **values}):
                return Broken(rule.field, rule.error())
        return None
