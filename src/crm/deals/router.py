from __future__ import annotations

from crm.deals.dependencies import deal_filters
from crm.deals.schemas import (
    DealCreate,
    DealHistoryRead,
    DealRead,
    DealReplace,
    DealStageMove,
    DealStatusMove,
    DealUpdate,
)
from crm.deals.service import DealService
from crm.records.kit import RecordKit, RouteDocs, Schemas

_MOVES = "(stage and status moves follow the rules of `/stage` and `/status`)"
deals = RecordKit(
    name="deals",
    service=DealService,
    docs=RouteDocs(
        create="""Create a deal in the given pipeline (default: the default pipeline) at the given stage
        (default: its first active one). Won needs an amount above 0 (409), lost a `lost_reason` (422).""",
        replace=f"""Replace every editable field {_MOVES}.
        Honours `If-Match` (412 when stale).""",
        update=f"""Change the fields sent {_MOVES}.
        Honours `If-Match` (412 when stale).""",
        delete="Soft-delete (restorable by an owner or admin).",
    ),
    schemas=Schemas(DealCreate, DealReplace, DealUpdate, DealRead),
    filters=deal_filters,
)

#: The record routes, and the deal's own: stage and status moves and their history.
router = deals.router()


deals.add_change(
    router,
    "PATCH",
    "/stage",
    DealStageMove,
    DealService.move_stage,
    name="move_deal_stage",
    doc="""Move the deal to another (non-archived) stage of its pipeline. Moving back to an earlier stage
    needs the `deals:move_back` permission (owner/admin; 403 otherwise). The same stage is a no-op.""",
)
deals.add_change(
    router,
    "PATCH",
    "/status",
    DealStatusMove,
    DealService.set_status,
    name="set_deal_status",
    doc="""Set the status. `won` needs an amount above 0 (409 `deal_amount_zero`); `lost` needs a
    `lost_reason` (422). Closing sets `closed_at`; reopening clears `closed_at` and `lost_reason`.
    The same status is a no-op.""",
)
deals.add_page(
    router,
    "history",
    DealHistoryRead,
    DealService.history,
    name="deal_history",
    doc="The deal's stage and status changes, newest first; its first stage row has `from_value` null.",
)
