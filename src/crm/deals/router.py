from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Response

from crm.core.concurrency import IfMatch, set_etag
from crm.core.openapi import errors
from crm.core.schemas import Id, Page, PageParams, page_params
from crm.deals.dependencies import deal_filters
from crm.deals.repository import SORTS
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
from crm.organizations.dependencies import Tenant, require
from crm.records.kit import RecordKit, RouteDocs

_MOVES = "(stage and status moves follow the rules of `/stage` and `/status`)"
deals = RecordKit(
    name="deals",
    entity="deal",
    service=DealService,
    create=DealCreate,
    replace=DealReplace,
    update=DealUpdate,
    read=DealRead,
    filters=deal_filters,
    sorts=list(SORTS),
    docs=RouteDocs(
        create="""Create a deal in the given pipeline (default: the default pipeline) at the given stage
        (default: its first active one). Won needs an amount above 0 (409), lost a `lost_reason` (422).""",
        replace=f"""Replace every editable field {_MOVES}.
        Honours `If-Match` (412 when stale).""",
        update=f"""Change the fields sent {_MOVES}.
        Honours `If-Match` (412 when stale).""",
        delete="Soft-delete (restorable by an owner or admin).",
    ),
    fast_read=True,
)

#: The record routes, and the deal's own: stage and status moves and their history.
router = deals.router()
Reader = Annotated[Tenant, Depends(require("deals:read"))]
Writer = Annotated[Tenant, Depends(require("deals:write"))]
Service = Annotated[DealService, Depends(deals.provide())]
Paging = Annotated[PageParams, Depends(page_params)]


@router.patch(
    "/{deal_id}/stage", response_model=DealRead, responses=errors(400, 401, 403, 404, 409, 412, 422)
)
async def move_deal_stage(
    deal_id: Id,
    data: DealStageMove,
    tenant: Writer,
    service: Service,
    response: Response,
    if_match: IfMatch = None,
) -> object:
    """Move the deal to another (non-archived) stage of its pipeline. Moving back to an earlier stage
    needs the `deals:move_back` permission (owner/admin; 403 otherwise). The same stage is a no-op."""
    deal = await service.move_stage(deal_id, data, if_match)
    set_etag(response, deal.version)
    return deal


@router.patch(
    "/{deal_id}/status", response_model=DealRead, responses=errors(400, 401, 403, 404, 409, 412, 422)
)
async def set_deal_status(
    deal_id: Id,
    data: DealStatusMove,
    tenant: Writer,
    service: Service,
    response: Response,
    if_match: IfMatch = None,
) -> object:
    """Set the status. `won` needs an amount above 0 (409 `deal_amount_zero`); `lost` needs a
    `lost_reason` (422). Closing sets `closed_at`; reopening clears `closed_at` and `lost_reason`.
    The same status is a no-op."""
    deal = await service.set_status(deal_id, data, if_match)
    set_etag(response, deal.version)
    return deal


@router.get(
    "/{deal_id}/history", response_model=Page[DealHistoryRead], responses=errors(400, 401, 403, 404, 422)
)
async def deal_history(deal_id: Id, tenant: Reader, service: Service, paging: Paging) -> object:
    """The deal's stage and status changes, newest first; its first stage row has `from_value` null."""
    rows, total = await service.history(deal_id, paging.limit, paging.offset)
    return Page(items=rows, total=total, limit=paging.limit, offset=paging.offset)
