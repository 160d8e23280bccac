"""`GET /users` for the corporate portal (compatibility contract, §11)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy import func, select

from crm.api_keys.service import authenticate_api_key
from crm.auth.dependencies import ApiKeyValue, BearerToken, authenticate_bearer
from crm.auth.repository import UserRepository
from crm.core.db import SessionDep
from crm.core.errors import Forbidden, Unauthorized
from crm.core.openapi import errors
from crm.core.schemas import PageParams, ReadModel, page_params
from crm.models import Membership, User

router = APIRouter(tags=["portal"])


class PortalUser(ReadModel):
    id: int
    name: str
    email: str


@router.get("/users", response_model=list[PortalUser], responses=errors(401, 403, 422))
async def list_users(
    request: Request,
    response: Response,
    db: SessionDep,
    paging: Annotated[PageParams, Depends(page_params)],
    token: BearerToken,
    api_key: ApiKeyValue,
) -> list[PortalUser]:
    """Active users: those of the API key's organization (scope `users:read`), or all of them for a
    superuser's bearer token. A bare list; the total is in `X-Total-Count`."""
    stmt = select(User).where(User.is_active.is_(True))
    if api_key and not token:
        key = await authenticate_api_key(db, api_key)
        if "users:read" not in key.scopes:
            raise Forbidden("This API key lacks the 'users:read' scope")
        stmt = stmt.where(
            User.id.in_(select(Membership.user_id).where(Membership.organization_id == key.organization_id))
        )
    elif token:
        claims = await authenticate_bearer(request, db, token)
        user = await UserRepository(db).get(claims.user_id)
        if user is None or not user.is_active:
            raise Unauthorized()
        if not user.is_superuser:
            raise Forbidden("Only a superuser or an API key with 'users:read' may list users")
    else:
        raise Unauthorized("Send an X-API-Key or a superuser's bearer token")
    total = await db.scalar(select(func.count()).select_from(stmt.subquery()))
    rows = await db.execute(stmt.order_by(User.id).limit(paging.limit).offset(paging.offset))
    response.headers["X-Total-Count"] = str(total or 0)
    response.headers["Cache-Control"] = "no-store"
    return [PortalUser(id=u.id, name=u.full_name, email=u.email) for u in rows.scalars()]
