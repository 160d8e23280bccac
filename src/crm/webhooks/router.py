"""`/webhooks`: outbound subscriptions of the organization (admins, `webhooks:manage`)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response, status

from crm.core.concurrency import IfMatch, set_etag
from crm.core.db import SessionDep
from crm.core.openapi import errors
from crm.core.schemas import Id, Page, PageParams, page_params
from crm.organizations.dependencies import Tenant, require
from crm.webhooks.schemas import DeliveryRead, WebhookCreate, WebhookCreated, WebhookRead, WebhookUpdate
from crm.webhooks.service import WebhookService

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

Manager = Annotated[Tenant, Depends(require("webhooks:manage"))]
Paging = Annotated[PageParams, Depends(page_params)]


async def get_service(db: SessionDep, tenant: Manager) -> WebhookService:
    return WebhookService(db, tenant)


Service = Annotated[WebhookService, Depends(get_service)]


@router.get("", response_model=Page[WebhookRead], responses=errors(400, 401, 403, 422))
async def list_webhooks(service: Service, paging: Paging) -> object:
    """The organization's subscriptions, newest first (secrets are not shown)."""
    items, total = await service.list(paging.limit, paging.offset)
    return Page(items=items, total=total, limit=paging.limit, offset=paging.offset)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookCreated,
    responses=errors(400, 401, 403, 422),
)
async def create_webhook(data: WebhookCreate, service: Service, response: Response) -> object:
    """Subscribe `url` to `events` (exact names, `deal.*` or `*`). Without a `secret` one is
    generated (`whsec_…`); it is returned here only. The URL must be http(s) and, unless private
    addresses are allowed, resolve to public addresses."""
    row = await service.create(data)
    response.headers["Location"] = f"/api/v1/webhooks/{row.id}"
    response.headers["Cache-Control"] = "no-store"
    set_etag(response, row.version)
    return row


@router.get("/{webhook_id}", response_model=WebhookRead, responses=errors(400, 401, 403, 404, 422))
async def get_webhook(webhook_id: Id, service: Service, response: Response) -> object:
    """One subscription. Another organization's → 404."""
    row = await service.get(webhook_id)
    set_etag(response, row.version)
    return row


@router.patch("/{webhook_id}", response_model=WebhookRead, responses=errors(400, 401, 403, 404, 412, 422))
async def update_webhook(
    webhook_id: Id, data: WebhookUpdate, service: Service, response: Response, if_match: IfMatch = None
) -> object:
    """Change the URL, events, secret or description; `enabled: true` re-enables a subscription that
    was disabled after failing, and its waiting deliveries go out."""
    row = await service.update(webhook_id, data, if_match)
    set_etag(response, row.version)
    return row


@router.delete(
    "/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(400, 401, 403, 404, 422)
)
async def delete_webhook(webhook_id: Id, service: Service) -> None:
    """Remove the subscription and its delivery log."""
    await service.delete(webhook_id)


@router.get(
    "/{webhook_id}/deliveries",
    response_model=Page[DeliveryRead],
    responses=errors(400, 401, 403, 404, 422),
)
async def list_deliveries(
    webhook_id: Id,
    service: Service,
    paging: Paging,
    delivery_status: Annotated[
        Literal["pending", "succeeded", "failed"] | None, Query(alias="status")
    ] = None,
) -> object:
    """The delivery log, newest first: status, last response code and duration, attempts, and
    every attempt in `log`."""
    items, total = await service.list_deliveries(webhook_id, delivery_status, paging.limit, paging.offset)
    return Page(items=items, total=total, limit=paging.limit, offset=paging.offset)


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryRead,
    responses=errors(400, 401, 403, 404, 422),
)
async def redeliver(webhook_id: Id, delivery_id: Id, service: Service) -> object:
    """Send a delivery again, with the same `webhook-id` (receivers may drop it as a duplicate)."""
    return await service.redeliver(webhook_id, delivery_id)


@router.post(
    "/{webhook_id}/test",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryRead,
    responses=errors(400, 401, 403, 404, 422),
)
async def test_webhook(webhook_id: Id, service: Service) -> object:
    """Queue a signed `webhook.test` ping to this subscription; follow it in the delivery log."""
    return await service.test(webhook_id)
