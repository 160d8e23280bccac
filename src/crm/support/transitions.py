"""The support measures' status model (PROJECTS.md "Support measure", "Decision"), declared as data for
`records/states.py`.

A decision moves the measure: `approved` → `approved`, `rejected` → `rejected`, `rework` → `requested`
(the same status: the decision is recorded, the status stays). `provided` is set through a PATCH, only
from `approved` (409 `support_not_approved`), and is final: a provided measure takes no more decisions
(409 `support_already_provided`). Who may: `projects:write`.
"""

from __future__ import annotations

from crm.organizations.dependencies import Tenant
from crm.records.states import Move, State, StateMachine, plain
from crm.support.exceptions import SupportAlreadyProvided, SupportNotApproved

#: What a decision's result sets the measure's status to.
STATUS_BY_RESULT = {"approved": "approved", "rejected": "rejected", "rework": "requested"}
#: The status of a new measure.
INITIAL_STATUS = "requested"

_DECIDABLE = ("requested", "approved", "rejected")


def _not_approved(current: str) -> SupportNotApproved:
    return SupportNotApproved(f"Only an approved measure can be provided; this one is {current}")


def _already_provided(_target: str) -> SupportAlreadyProvided:
    return SupportAlreadyProvided("The support was already provided; it takes no more decisions")


SUPPORT_STATUSES = StateMachine[Tenant](
    noun="support measure",
    states=(
        *plain("requested", "approved", "rejected"),
        State("provided", final=True, refuse_entry=_not_approved, refuse_exit=_already_provided),
    ),
    moves=(
        *(Move[Tenant](s, t, permission="projects:write") for s in _DECIDABLE for t in _DECIDABLE if s != t),
        Move[Tenant]("approved", "provided", permission="projects:write"),
    ),
    same_is_noop=True,
)
