from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from crm.core.db import SessionDep
from crm.core.idempotency import IdempotencyDep
from crm.core.idempotent import create_once
from crm.core.openapi import creates, errors
from crm.core.redis import SafeRedis, redis_dependency
from crm.core.schemas import Id, Page, Paging
from crm.custom_fields.schemas import CustomFieldCreate, CustomFieldRead, CustomFieldUpdate, FieldEntity
from crm.custom_fields.service import CustomFieldService
from crm.organizations.dependencies import Tenant, principal_of, require

router = APIRouter(prefix="/custom-fields", tags=["custom fields"])

Reader = Annotated[Tenant, Depends(require("custom_fields:read"))]
Admin = Annotated[Tenant, Depends(require("custom_fields:manage"))]
#: Definition writes retire the definitions every API process has cached.
Redis = Annotated[SafeRedis, Depends(redis_dependency)]


@router.get("", response_model=Page[CustomFieldRead], responses=errors(400, 401, 403, 422))
async def list_custom_fields(
    tenant: Reader,
    db: SessionDep,
    paging: Paging,
    entity: FieldEntity | None = None,
) -> object:
    rows = await CustomFieldService(db, tenant.organization_id).definitions(entity)
    window = rows[paging.offset : paging.offset + paging.limit]
    return paging.page(window, len(rows))


@creates(router, "", CustomFieldRead, 400, 401, 403, 409, 422)
async def create_custom_field(
    data: CustomFieldCreate,
    tenant: Admin,
    db: SessionDep,
    redis: Redis,
    response: Response,
    idem: IdempotencyDep,
) -> object:
    """Define a custom field (admin). Values then live in the records' `custom_fields`.
    A key is unique per entity (409 `custom_field_key_taken`)."""

    async def create() -> CustomFieldRead:
        field = await CustomFieldService(db, tenant.organization_id, redis).create(data)
        response.headers["Location"] = f"/api/v1/custom-fields/{field.id}"
        return CustomFieldRead.model_validate(field)

    return await create_once(idem, principal_of(tenant), response, create)


@router.get("/{field_id}", response_model=CustomFieldRead, responses=errors(400, 401, 403, 404, 422))
async def get_custom_field(field_id: Id, tenant: Reader, db: SessionDep) -> object:
    return await CustomFieldService(db, tenant.organization_id).get(field_id)


@router.patch("/{field_id}", response_model=CustomFieldRead, responses=errors(400, 401, 403, 404, 422))
async def update_custom_field(
    field_id: Id, data: CustomFieldUpdate, tenant: Admin, db: SessionDep, redis: Redis
) -> object:
    """Change label, options or required; key, entity and type are fixed."""
    return await CustomFieldService(db, tenant.organization_id, redis).update(field_id, data)


@router.delete(
    "/{field_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(400, 401, 403, 404, 422)
)
async def delete_custom_field(field_id: Id, tenant: Admin, db: SessionDep, redis: Redis) -> None:
    """Remove the definition; values already stored on records are kept but no longer validated."""
    await CustomFieldService(db, tenant.organization_id, redis).delete(field_id)
