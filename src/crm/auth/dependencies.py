"""Who is calling: bearer tokens (users) and the current user."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import structlog
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer

from crm.auth.exceptions import InvalidTokenError
from crm.auth.repository import UserRepository
from crm.auth.revocation import session_alive
from crm.config import get_settings
from crm.core.db import SessionDep
from crm.core.errors import Forbidden, Unauthorized
from crm.core.security import InvalidToken, TokenClaims, decode_token
from crm.models import User

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, description="Organization API key")

BearerToken = Annotated[str | None, Depends(oauth2_scheme)]
ApiKeyValue = Annotated[str | None, Depends(api_key_scheme)]


async def authenticate_bearer(
    request: Request, db: SessionDep, token: str, *, check_session: bool = True
) -> TokenClaims:
    """Verify an access token and (unless the caller does it itself) that its session is alive."""
    try:
        claims = decode_token(get_settings(), token, "access")
    except InvalidToken:
        raise InvalidTokenError() from None
    redis = request.app.state.redis
    if check_session and not await session_alive(redis, db, claims.session_id, claims.user_id):
        raise InvalidTokenError("Session has been revoked")
    structlog.contextvars.bind_contextvars(user_id=claims.user_id)
    return claims


async def get_claims(request: Request, db: SessionDep, token: BearerToken) -> TokenClaims:
    if not token:
        raise Unauthorized()
    return await authenticate_bearer(request, db, token)


Claims = Annotated[TokenClaims, Depends(get_claims)]


@dataclass(frozen=True, slots=True)
class AuthContext:
    user: User
    session_id: int


async def get_current_auth(db: SessionDep, claims: Claims) -> AuthContext:
    user = await UserRepository(db).get(claims.user_id)
    if user is None or not user.is_active:
        raise InvalidTokenError("User is inactive")
    return AuthContext(user=user, session_id=claims.session_id)


CurrentAuth = Annotated[AuthContext, Depends(get_current_auth)]


async def get_current_user(auth: CurrentAuth) -> User:
    return auth.user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_superuser(user: CurrentUser) -> User:
    if not user.is_superuser:
        raise Forbidden("Superuser only")
    return user


Superuser = Annotated[User, Depends(get_superuser)]
