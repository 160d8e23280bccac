from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from crm.activities.router import add_timeline_routes
from crm.core.concurrency import IfMatch, set_etag
from crm.core.db import SessionDep
from crm.core.idempotency import IdempotencyDep
from crm.core.openapi import errors
from crm.core.schemas import Id, Page, PageParams, page_params, sort_param
from crm.deals.dependencies import deal_filters, ensure_deal
from crm.deals.repository import DealFilters
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
from crm.models import Deal
from crm.organizations.dependencies import Tenant, require
from crm.records.fast_read import fast_read
from crm.records.router import idempotent_create

router = APIRouter(prefix="/deals", tags=["deals"])
PATH = "/api/v1/deals"

Reader = Annotated[Tenant, Depends(require("deals:read"))]
Writer = Annotated[Tenant, Depends(require("deals:write"))]
Paging = Annotated[PageParams, Depends(page_params)]
if TYPE_CHECKING:
    DealSort = str | None
else:
    DealSort = sort_param("created_at", "amount", "expected_close_date")


def service(request: Request, db: SessionDep, tenant: Tenant) -> DealService:
    return DealService(db, tenant, request.app.state.redis)


@router.get("", response_model=Page[DealRead], responses=errors(400, 401, 403, 422))
async def list_deals(
    request: Request,
    tenant: Reader,
    db: SessionDep,
    paging: Paging,
    filters: Annotated[DealFilters, Depends(deal_filters)],
    sort: DealSort = None,
) -> object:
    """Deals, newest first. Custom fields filter as `cf.<key>=value`."""
    rows, total = await service(request, db, tenant).list(filters, sort, paging.limit, paging.offset)
    return Page(items=rows, total=total, limit=paging.limit, offset=paging.offset)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DealRead,
    responses=errors(400, 401, 403, 409, 422),
)
async def create_deal(
    data: DealCreate,
    request: Request,
    tenant: Writer,
    db: SessionDep,
    response: Response,
    idem: IdempotencyDep,
) -> object:
    """Create a deal in the given pipeline (default: the default pipeline) at the given stage
    (default: its first active one). Won needs an amount above 0 (409), lost a `lost_reason` (422)."""
    return await idempotent_create(
        idem, tenant, response, lambda: service(request, db, tenant).create(data), DealRead, PATH
    )


@router.get("/{deal_id}", response_model=DealRead, responses=errors(400, 401, 403, 404, 422))
@fast_read(Deal, "deals:read", DealRead)
async def get_deal(
    deal_id: Id, request: Request, tenant: Reader, db: SessionDep, response: Response
) -> object:
    """One deal; its `ETag` is the version to send back in `If-Match`."""
    deal = await service(request, db, tenant).get(deal_id)
    set_etag(response, deal.version)
    return deal


@router.put("/{deal_id}", response_model=DealRead, responses=errors(400, 401, 403, 404, 409, 412, 422))
async def replace_deal(
    deal_id: Id,
    data: DealReplace,
    request: Request,
    tenant: Writer,
    db: SessionDep,
    response: Response,
    if_match: IfMatch = None,
) -> object:
    """Replace every editable field (stage and status moves follow the rules of `/stage` and `/status`).
    Honours `If-Match` (412 when stale)."""
    deal = await service(request, db, tenant).replace(deal_id, data, if_match)
    set_etag(response, deal.version)
    return deal


@router.patch("/{deal_id}", response_model=DealRead, responses=errors(400, 401, 403, 404, 409, 412, 422))
async def update_deal(
    deal_id: Id,
    data: DealUpdate,
    request: Request,
    tenant: Writer,
    db: SessionDep,
    response: Response,
    if_match: IfMatch = None,
) -> object:
    """Change the fields sent (stage and status moves follow the rules of `/stage` and `/status`).
    Honours `If-Match` (412 when stale)."""
    deal = await service(request, db, tenant).update(deal_id, data, if_match)
    set_etag(response, deal.version)
    return deal


@router.patch(
    "/{deal_id}/stage", response_model=DealRead, responses=errors(400, 401, 403, 404, 409, 412, 422)
)
async def move_deal_stage(
    deal_id: Id,
    data: DealStageMove,
    request: Request,
    tenant: Writer,
    db: SessionDep,
    response: Response,
    if_match: IfMatch = None,
) -> object:
    """Move the deal to another (non-archived) stage of its pipeline. Moving back to an earlier stage
    needs the `deals:move_back` permission (owner/admin; 403 otherwise). The same stage is a no-op."""
    deal = await service(request, db, tenant).move_stage(deal_id, data, if_match)
    set_etag(response, deal.version)
    return deal


@router.patch(
    "/{deal_id}/status", response_model=DealRead, responses=errors(400, 401, 403, 404, 409, 412, 422)
)
async def set_deal_status(
    deal_id: Id,
    data: DealStatusMove,
    request: Request,
    tenant: Writer,
    db: SessionDep,
    response: Response,
    if_match: IfMatch = None,
) -> object:
    """Set the status. `won` needs an amount above 0 (409 `deal_amount_zero`); `lost` needs a
    `lost_reason` (422). Closing sets `closed_at`; reopening clears `closed_at` and `lost_reason`.
    The same status is a no-op."""
    deal = await service(request, db, tenant).set_status(deal_id, data, if_match)
    set_etag(response, deal.version)
    return deal


@router.get(
    "/{deal_id}/history", response_model=Page[DealHistoryRead], responses=errors(400, 401, 403, 404, 422)
)
async def deal_history(
    deal_id: Id, request: Request, tenant: Reader, db: SessionDep, paging: Paging
) -> object:
    """The deal's stage and status changes, newest first; its first stage row has `from_value` null."""
    rows, total = await service(request, db, tenant).history(deal_id, paging.limit, paging.offset)
    return Page(items=rows, total=total, limit=paging.limit, offset=paging.offset)


@router.delete(
    "/{deal_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(400, 401, 403, 404, 422)
)
async def delete_deal(
    deal_id: Id,
    request: Request,
    tenant: Annotated[Tenant, Depends(require("deals:delete"))],
    db: SessionDep,
) -> None:
    """Soft-delete (restorable by an owner or admin)."""
    await service(request, db, tenant).delete(deal_id)


@router.post("/{deal_id}/restore", response_model=DealRead, responses=errors(400, 401, 403, 404, 409, 422))
async def restore_deal(
    deal_id: Id,
    request: Request,
    tenant: Annotated[Tenant, Depends(require("records:restore"))],
    db: SessionDep,
    response: Response,
) -> object:
    """Bring back a deleted deal (owner/admin)."""
    deal = await service(request, db, tenant).restore(deal_id)
    set_etag(response, deal.version)
    return deal


add_timeline_routes(router, "deal", "deals:read", ensure_deal)
