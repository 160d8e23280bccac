"""The deals' status model and stage rule (`docs/pipelines-and-deals.md`), declared as data for
`records/states.py`.

Status: any move between `new`, `in_progress`, `won` and `lost` (the same status is a no-op). `won`
needs an amount above 0 (409 `deal_amount_zero`, also when a won deal's amount is set to 0); `lost`
needs a `lost_reason` (422), which only a lost deal keeps; entering `won` or `lost` stamps `closed_at`,
reopening clears it. API writes and imported rows run the same rules (`DEAL_STATUSES.settle`).

Stage: a move within the pipeline to an earlier stage (by position, not key) needs `deals:move_back`
(403); the stages themselves are the pipeline's data. Imports do not check it (`docs/imports.md`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from crm.deals.exceptions import DealAmountZero, StageMoveBackForbidden
from crm.organizations.dependencies import Tenant
from crm.records.states import ANY, Invariant, Move, State, StateMachine, plain


def _has_amount(deal: Mapping[str, Any]) -> bool:
    return (deal.get("amount") or Decimal("0")) != 0


WON_HAS_AMOUNT = Invariant("a deal cannot be won with amount 0", _has_amount, DealAmountZero, field="amount")

DEAL_STATUSES = StateMachine[Tenant](
    noun="deal",
    states=(
        *plain("new", "in_progress"),
        State("won", stamps="closed_at", invariants=(WON_HAS_AMOUNT,)),
        State("lost", stamps="closed_at", keeps=("lost_reason",)),
    ),
    moves=(Move(ANY, ANY, permission="deals:write"),),
    same_is_noop=True,
)
#: The status of a deal created without one.
INITIAL_STATUS = "new"


@dataclass(frozen=True)
class StageMove:
    """A move between two stages of one pipeline, by their positions, and the caller's permissions."""

    current_position: int | None
    target_position: int
    permissions: frozenset[str]

    def can(self, permission: str, /) -> bool:
        return permission in self.permissions


def _backward(move: StageMove) -> bool:
    return move.current_position is not None and move.target_position < move.current_position


DEAL_STAGES = StateMachine[StageMove](
    noun="deal",
    moves=(
        Move(ANY, ANY, applies=_backward, permission="deals:move_back", forbidden=StageMoveBackForbidden),
        Move(ANY, ANY, permission="deals:write"),
    ),
    same_is_noop=True,
)
