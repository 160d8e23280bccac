from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from crm.core.db import SessionDep
from crm.core.openapi import errors
from crm.core.schemas import Id, Page, PageParams, page_params
from crm.notifications.schemas import NotificationRead
from crm.notifications.service import NotificationService
from crm.organizations.dependencies import Tenant, require

router = APIRouter(prefix="/notifications", tags=["notifications"])

Reader = Annotated[Tenant, Depends(require("notifications:read"))]
Paging = Annotated[PageParams, Depends(page_params)]


@router.get("", response_model=Page[NotificationRead], responses=errors(400, 401, 403, 422))
async def list_notifications(
    tenant: Reader,
    db: SessionDep,
    paging: Paging,
    unread: Annotated[bool | None, Query(description="`true`: unread only; `false`: read only")] = None,
) -> object:
    """My notifications in this organization (and those tied to no organization), newest first."""
    rows, total = await NotificationService(db, tenant).list(unread, paging.limit, paging.offset)
    return Page(items=rows, total=total, limit=paging.limit, offset=paging.offset)


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
