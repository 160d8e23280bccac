"""`GET /users` for the corporate portal (compatibility contract, §11)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from crm.auth.dependencies import ApiKeyValue, BearerToken, authenticate_bearer
from crm.core.db import SessionDep
from crm.core.errors import Unauthorized
from crm.core.openapi import errors
from crm.core.schemas import Paging
from crm.users.schemas import PortalUser
from crm.users.service import PortalUserService

router = APIRouter(tags=["portal"])


@router.get("/users", response_model=list[PortalUser], responses=errors(401, 403, 422))
async def list_users(
    request: Request,
    response: Response,
    db: SessionDep,
    paging: Paging,
    token: BearerToken,
    api_key: ApiKeyValue,
) -> list[PortalUser]:
    """Active users: those of the API key's organization (scope `users:read`), or all of them for a
    superuser's bearer token. A bare list; the total is in `X-Total-Count`."""
    service = PortalUserService(db)
    if token:
        claims = await authenticate_bearer(request, db, token)
        users, total = await service.for_bearer(claims, paging.limit, paging.offset)
    elif api_key:
        users, total = await service.for_api_key(api_key, paging.limit, paging.offset)
    else:
        raise Unauthorized("Send an X-API-Key or a superuser's bearer token")
    response.headers["X-Total-Count"] = str(total)
    response.headers["Cache-Control"] = "no-store"
    return [PortalUser(id=u.id, name=u.full_name, email=u.email) for u in users]
