from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response

from crm.activities.repository import ActivityFilters
from crm.activities.schemas import ActivityRead, CommentCreate, EntityType
from crm.activities.service import ActivityService
from crm.core.db import SessionDep
from crm.core.openapi import creates, errors
from crm.core.schemas import BIGINT_MAX, Id, Page, Paging, UtcDatetime
from crm.organizations.dependencies import Tenant, require

router = APIRouter(prefix="/activities", tags=["activities"])

Action = Literal[
    "created",
    "updated",
    "deleted",
    "restored",
    "stage_changed",
    "status_changed",
    "comment",
    "imported",
    "synced",
]


@router.get("", response_model=Page[ActivityRead], responses=errors(400, 401, 403, 422))
async def list_activities(
    tenant: Annotated[Tenant, Depends(require("activities:read"))],
    db: SessionDep,
    paging: Paging,
    entity_type: EntityType | None = None,
    entity_id: Annotated[int | None, Query(ge=1, le=BIGINT_MAX)] = None,
    actor_id: Annotated[int | None, Query(ge=1, le=BIGINT_MAX)] = None,
    action: Action | None = None,
    date_from: Annotated[UtcDatetime | None, Query(alias="from", description="Created at or after")] = None,
    date_to: Annotated[UtcDatetime | None, Query(alias="to", description="Created at or before")] = None,
) -> object:
    """The organization's activity log, newest first."""
    filters = ActivityFilters(entity_type, entity_id, actor_id, action, date_from, date_to)
    rows, total = await ActivityService(db, tenant.organization_id, tenant.user_id).list(
        filters, paging.limit, paging.offset
    )
    return paging.page(rows, total)


@router.get("/{activity_id}", response_model=ActivityRead, responses=errors(400, 401, 403, 404, 422))
async def get_activity(
    activity_id: Id, tenant: Annotated[Tenant, Depends(require("activities:read"))], db: SessionDep
) -> object:
    return await ActivityService(db, tenant.organization_id, tenant.user_id).get(activity_id)


def add_timeline_routes(
    feature_router: APIRouter,
    entity_type: str,
    read_permission: str,
    ensure_exists: Callable[[SessionDep, int, int], Awaitable[None]],
) -> None:
    """Add `POST /{id}/comments` and `GET /{id}/activities` to a record's router.

    `ensure_exists(db, organization_id, record_id)` raises 404 for a missing or foreign record."""

    comment = {"name": f"comment_{entity_type}", "summary": f"Comment on a {entity_type}"}

    @creates(feature_router, "/{record_id}/comments", ActivityRead, 400, 401, 403, 404, 422, **comment)
    async def add_comment(
        record_id: Id,
        data: CommentCreate,
        tenant: Annotated[Tenant, Depends(require("comments:write"))],
        db: SessionDep,
        response: Response,
    ) -> object:
        await ensure_exists(db, tenant.organization_id, record_id)
        activity = await ActivityService(db, tenant.organization_id, tenant.user_id).comment(
            entity_type, record_id, data.text
        )
        response.headers["Location"] = f"/api/v1/activities/{activity.id}"
        return activity

    @feature_router.get(
        "/{record_id}/activities",
        response_model=Page[ActivityRead],
        responses=errors(400, 401, 403, 404, 422),
        name=f"{entity_type}_timeline",
        summary=f"Timeline of a {entity_type}",
    )
    async def timeline(
        record_id: Id,
        tenant: Annotated[Tenant, Depends(require(read_permission))],
        db: SessionDep,
        paging: Paging,
    ) -> object:
        await ensure_exists(db, tenant.organization_id, record_id)
        rows, total = await ActivityService(db, tenant.organization_id, tenant.user_id).list(
            ActivityFilters(entity_type=entity_type, entity_id=record_id), paging.limit, paging.offset
        )
        return paging.page(rows, total)
