from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from crm.api_keys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyRead
from crm.api_keys.service import ApiKeyService
from crm.core.db import SessionDep
from crm.core.openapi import errors
from crm.core.schemas import Id, Page, PageParams, page_params
from crm.organizations.dependencies import Tenant, require

router = APIRouter(prefix="/api-keys", tags=["api keys"])

Admin = Annotated[Tenant, Depends(require("api_keys:manage"))]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated,
             responses=errors(400, 401, 403, 422))
async def create_api_key(data: ApiKeyCreate, tenant: Admin, db: SessionDep, response: Response) -> object:
    """Create an organization API key. The secret `key` is returned only here; send it as `X-API-Key`."""
    key, raw = await ApiKeyService(db, tenant.organization_id).create(data, tenant.user_id, tenant.permissions)
    response.headers["Location"] = f"/api/v1/api-keys/{key.id}"
    response.headers["Cache-Control"] = "no-store"
    return ApiKeyCreated(**ApiKeyRead.model_validate(key).model_dump(), key=raw)


@router.get("", response_model=Page[ApiKeyRead], responses=errors(400, 401, 403, 422))
async def list_api_keys(
    tenant: Admin, db: SessionDep, paging: Annotated[PageParams, Depends(page_params)]
) -> object:
    """The organization's keys (never their secrets)."""
    rows, total = await ApiKeyService(db, tenant.organization_id).list(paging.limit, paging.offset)
    return Page(items=[ApiKeyRead.model_validate(r) for r in rows], total=total, limit=paging.limit,
                offset=paging.offset)


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(400, 401, 403, 404, 422))
async def delete_api_key(key_id: Id, tenant: Admin, db: SessionDep) -> None:
    """Revoke a key; it stops working at once."""
    await ApiKeyService(db, tenant.organization_id).delete(key_id)
