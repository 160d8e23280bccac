"""`/alerts` (SPEC §12): the organization's system alerts, for admins (`alerts:manage`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from crm.alerts.schemas import AlertKind, AlertRead, AlertStatus
from crm.alerts.service import AlertService
from crm.core.db import SessionDep
from crm.core.openapi import errors
from crm.core.schemas import Id, Page, Paging
from crm.organizations.dependencies import Tenant, require

router = APIRouter(prefix="/alerts", tags=["alerts"])

Manager = Annotated[Tenant, Depends(require("alerts:manage"))]


@router.get("", response_model=Page[AlertRead], responses=errors(400, 401, 403, 422))
async def list_alerts(
    tenant: Manager,
    db: SessionDep,
    paging: Paging,
    kind: AlertKind | None = None,
    status: Annotated[AlertStatus | None, Query(description="open, acknowledged or resolved")] = None,
) -> object:
    """System alerts (low stock, sync failures), newest first."""
    items, total = await AlertService(db, tenant).list(kind, status, paging.limit, paging.offset)
    return paging.page(items, total)


@router.post("/{alert_id}/ack", response_model=AlertRead, responses=errors(400, 401, 403, 404, 422))
async def acknowledge_alert(alert_id: Id, tenant: Manager, db: SessionDep) -> object:
    """Acknowledge an alert. It stays unresolved until its condition clears, and is not raised again
    meanwhile; acknowledging twice keeps the first acknowledgement."""
    return await AlertService(db, tenant).acknowledge(alert_id)
