from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from crm.api_keys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyRead
from crm.api_keys.service import ApiKeyService
from crm.core.db import SessionDep
from crm.core.openapi import creates, errors
from crm.core.schemas import Id, Page, Paging
from crm.organizations.dependencies import Tenant, require

router = APIRouter(prefix="/api-keys", tags=["api keys"])


KeyManager = Annotated[Tenant, Depends(require("api_keys:manage"))]


async def get_service(db: SessionDep, tenant: KeyManager) -> ApiKeyService:
    return ApiKeyService(db, tenant)


Service = Annotated[ApiKeyService, Depends(get_service)]


@creates(router, "", ApiKeyCreated, 400, 401, 403, 422)
async def create_api_key(data: ApiKeyCreate, service: Service, response: Response) -> ApiKeyCreated:
    """Create an organization API key with scopes you hold yourself (plus `users:read`).
    The secret `key` is returned only here; send it as `X-API-Key`. The key acts for you: on every
    use it may do at most what you still may do in the organization, and it stops working
    (401 `api_key_revoked`) when you leave it or are deactivated, until an admin re-issues it."""
    key, raw = await service.create(data)
    response.headers["Location"] = f"/api/v1/api-keys/{key.id}"
    response.headers["Cache-Control"] = "no-store"
    return ApiKeyCreated(**ApiKeyRead.model_validate(key).model_dump(), key=raw)


@router.get("", response_model=Page[ApiKeyRead], responses=errors(400, 401, 403, 422))
async def list_api_keys(service: Service, paging: Paging) -> Page[ApiKeyRead]:
    """The organization's keys (never their secrets), newest first."""
    rows, total = await service.list(paging.limit, paging.offset)
    return paging.page([ApiKeyRead.model_validate(r) for r in rows], total)


@router.get("/{key_id}", response_model=ApiKeyRead, responses=errors(400, 401, 403, 404, 422))
async def get_api_key(key_id: Id, service: Service) -> ApiKeyRead:
    """One key of the organization (never its secret)."""
    return ApiKeyRead.model_validate(await service.get(key_id))


@router.post(
    "/{key_id}/reissue",
    response_model=ApiKeyCreated,
    responses=errors(400, 401, 403, 404, 422),
)
async def reissue_api_key(key_id: Id, service: Service, response: Response) -> ApiKeyCreated:
    """Give a key a new secret that acts for you from now on (you must hold its scopes). The old
    secret stops working at once. Use it when the key's creator left the organization
    (`api_key_revoked`) or the secret leaked. The new `key` is returned only here."""
    key, raw = await service.reissue(key_id)
    response.headers["Cache-Control"] = "no-store"
    return ApiKeyCreated(**ApiKeyRead.model_validate(key).model_dump(), key=raw)


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(400, 401, 403, 404, 422))
async def delete_api_key(key_id: Id, service: Service) -> None:
    """Revoke a key; it stops working at once."""
    await service.delete(key_id)
