from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, status
from fastapi.responses import StreamingResponse

from crm.auth.dependencies import ApiKeyValue, BearerToken
from crm.core.db import SessionDep
from crm.core.errors import Forbidden, Unauthorized
from crm.core.openapi import creates, errors
from crm.core.redis import get_redis
from crm.core.schemas import Id, Page, Paging
from crm.notifications.schemas import (
    NotificationRead,
    PreferencesRead,
    PreferencesUpdate,
    StreamTicket,
    UnreadCount,
)
from crm.notifications.service import NotificationService, PreferenceService, is_active_member
from crm.notifications.stream import TICKET_TTL_SECONDS, issue_ticket, keep_ticket, open_stream, redeem_ticket
from crm.organizations.dependencies import OrgHeader, Tenant, get_tenant, require

router = APIRouter(prefix="/notifications", tags=["notifications"])

Reader = Annotated[Tenant, Depends(require("notifications:read"))]


@router.get("", response_model=Page[NotificationRead], responses=errors(400, 401, 403, 422))
async def list_notifications(
    tenant: Reader,
    db: SessionDep,
    paging: Paging,
    unread: Annotated[bool | None, Query(description="`true`: unread only; `false`: read only")] = None,
) -> object:
    """My notifications in this organization (and those tied to no organization), newest first."""
    rows, total = await NotificationService(db, tenant).list(unread, paging.limit, paging.offset)
    return paging.page(rows, total)


@router.post("/read-all", status_code=status.HTTP_204_NO_CONTENT, responses=errors(400, 401, 403))
async def read_all_notifications(tenant: Reader, db: SessionDep) -> None:
    """Mark all my unread notifications of this organization as read."""
    await NotificationService(db, tenant).mark_all_read()


@router.post(
    "/{notification_id}/read",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(400, 401, 403, 404, 422),
)
async def read_notification(notification_id: Id, tenant: Reader, db: SessionDep) -> None:
    """Mark one of my notifications as read (again: no change). Anyone else's → 404."""
    await NotificationService(db, tenant).mark_read(notification_id)


def _user_id(tenant: Tenant) -> int:
    if tenant.user_id is None:
        raise Forbidden("Notifications belong to users; an API key has none")
    return tenant.user_id


@router.get("/unread-count", response_model=UnreadCount, responses=errors(400, 401, 403))
async def unread_count(tenant: Reader, db: SessionDep) -> object:
    """How many of my notifications in this organization are unread (for a badge)."""
    return UnreadCount(unread=await NotificationService(db, tenant).unread_count())


@router.get("/preferences", response_model=PreferencesRead, responses=errors(400, 401, 403))
async def get_preferences(tenant: Reader, db: SessionDep) -> object:
    """My language and, per kind of notification, whether it shows in the app and/or is emailed."""
    return await PreferenceService(db, _user_id(tenant)).get()


@router.put("/preferences", response_model=PreferencesRead, responses=errors(400, 401, 403, 422))
async def put_preferences(data: PreferencesUpdate, tenant: Reader, db: SessionDep) -> object:
    """Replace my preferences. A kind left out goes back to the default (in the app, no email);
    `language` (`en` or `ru`) is the language of my emails."""
    return await PreferenceService(db, _user_id(tenant)).replace(data)


@creates(router, "/stream-ticket", StreamTicket, 400, 401, 403, 503)
async def stream_ticket(tenant: Reader, request: Request) -> object:
    """A ticket for `GET /notifications/stream?ticket=…` where the client cannot send headers (a
    browser's `EventSource`): it opens one stream within a minute, and then serves that stream's
    reconnects (which carry `Last-Event-ID`) for a minute after the stream was last alive."""
    ticket = await issue_ticket(get_redis(request), _user_id(tenant), tenant.organization_id)
    return StreamTicket(ticket=ticket, expires_in=TICKET_TTL_SECONDS)


async def require_notifications_stream(
    request: Request,
    db: SessionDep,
    token: BearerToken,
    api_key: ApiKeyValue,
    organization_id: OrgHeader = None,
    ticket: Annotated[
        str | None, Query(min_length=10, max_length=100, description="A ticket from `POST /stream-ticket`")
    ] = None,
) -> Tenant:
    """The stream's caller: a bearer token (with the organization), or a stream ticket (its first
    stream, or a reconnect with `Last-Event-ID`) of a user still active in the organization."""
    if ticket is not None:
        reconnect = request.headers.get("last-event-id") is not None
        found = await redeem_ticket(get_redis(request), ticket, reconnect=reconnect)
        if found is None or not await is_active_member(db, *found):
            raise Unauthorized("The stream ticket is unknown, expired or used")
        user_id, org = found
        request.state.stream_ticket = ticket
        return Tenant(org, frozenset({"notifications:read"}), user_id=user_id)
    tenant = await get_tenant(request, db, token, api_key, organization_id)
    if not tenant.can("notifications:read"):
        raise Forbidden("This needs the 'notifications:read' permission")
    return tenant


def _ticket_keepalive(request: Request) -> Callable[[], Awaitable[None]] | None:
    ticket: str | None = getattr(request.state, "stream_ticket", None)
    if ticket is None:
        return None
    redis = get_redis(request)
    return lambda: keep_ticket(redis, ticket)


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={
        **errors(400, 401, 403, 422, 503),
        200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"},
    },
)
async def stream_notifications(
    request: Request,
    tenant: Annotated[Tenant, Depends(require_notifications_stream)],
    last_event_id: Annotated[int | None, Header(alias="Last-Event-ID", ge=0)] = None,
) -> StreamingResponse:
    """My new notifications as Server-Sent Events (`event: notification`, `id` = notification id,
    `data` = the notification). Reconnect with `Last-Event-ID` to receive what was missed; a
    comment line every 15 s keeps the connection open. 503 when live delivery is unavailable."""
    events = await open_stream(
        request.app.state.sessionmaker,
        _user_id(tenant),
        tenant.organization_id,
        last_event_id,
        request.is_disconnected,
        keepalive=_ticket_keepalive(request),
    )
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no", "Connection": "keep-alive"},
    )
