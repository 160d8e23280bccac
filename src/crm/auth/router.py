from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import ValidationError

from crm.auth.dependencies import CurrentAuth, CurrentUser
from crm.auth.schemas import (
    LoginRequest,
    MembershipBrief,
    MeRead,
    PasswordChange,
    RefreshRequest,
    SessionRead,
    TokenPair,
    TokenResponse,
    UserBrief,
    UserRead,
    UserRegister,
)
from crm.auth.service import AuthService, ClientInfo
from crm.config import get_settings
from crm.core.db import SessionDep
from crm.core.openapi import errors
from crm.core.ratelimit import RateLimiterDep, client_ip, limit_per_ip
from crm.core.schemas import Id, Page, Paging, from_row
from crm.core.security import decode_token

router = APIRouter(prefix="/auth", tags=["auth"])

NO_STORE = {"Cache-Control": "no-store"}


async def get_auth_service(request: Request, db: SessionDep) -> AuthService:
    return AuthService(db, request.app.state.redis, get_settings())


Service = Annotated[AuthService, Depends(get_auth_service)]


def _client(request: Request) -> ClientInfo:
    return ClientInfo(ip=client_ip(request), user_agent=request.headers.get("user-agent"))


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserRead,
    dependencies=[Depends(limit_per_ip("register", "rate_limit_register_per_ip"))],
    responses=errors(409, 422, 429),
)
async def register(data: UserRegister, service: Service, response: Response) -> object:
    """Create a user account (no tokens; log in next). Email is unique case-insensitively."""
    user = await service.register(data)
    response.headers["Location"] = "/api/v1/auth/me"
    response.headers.update(NO_STORE)
    return user


#: `/login` and `/token` are one login in two encodings: one per-IP limit, the same answers.
LOGIN: dict[str, Any] = {
    "response_model": TokenResponse,
    "dependencies": [Depends(limit_per_ip("login", "rate_limit_login_per_ip"))],
    "responses": errors(401, 422, 429),
}


@router.post("/login", **LOGIN)
async def login(
    data: LoginRequest, request: Request, response: Response, service: Service, limiter: RateLimiterDep
) -> TokenResponse:
    """Exchange email and password for an access and a refresh token (and who they belong to)."""
    response.headers.update(NO_STORE)
    return await _with_user(service, await service.login(data, _client(request), limiter))


@router.post("/token", **LOGIN)
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    response: Response,
    service: Service,
    limiter: RateLimiterDep,
) -> TokenResponse:
    """The same as `/login` as an OAuth2 password form (`username` is the email); used by Swagger UI."""
    response.headers.update(NO_STORE)
    return await _with_user(service, await service.login(_form_login(form), _client(request), limiter))


async def _with_user(service: AuthService, pair: TokenPair) -> TokenResponse:
    """The pair with its user (§20.3), read in the request's transaction."""
    claims = decode_token(service.settings, pair.access_token, "access")
    user = await service.users.get(claims.user_id)
    if user is None:  # pragma: no cover - the pair was issued for this user in this transaction
        raise RuntimeError("token issued for a missing user")
    return TokenResponse(**pair.model_dump(), user=UserBrief.model_validate(user))


def _form_login(form: OAuth2PasswordRequestForm) -> LoginRequest:
    """The form's fields under the JSON login's rules; a bad field is a 422 naming the form field."""
    try:
        return LoginRequest(email=form.username, password=form.password)
    except ValidationError as exc:
        fields = {"email": "username", "password": "password"}
        raise RequestValidationError(
            [
                {**err, "loc": ("body", fields.get(str(err["loc"][0]), err["loc"][0]), *err["loc"][1:])}
                for err in exc.errors(include_url=False)
            ]
        ) from None


@router.post(
    "/refresh",
    response_model=TokenResponse,
    dependencies=[Depends(limit_per_ip("refresh", "rate_limit_refresh_per_ip"))],
    responses=errors(401, 422, 429),
)
async def refresh(data: RefreshRequest, response: Response, service: Service) -> TokenResponse:
    """Rotate: the refresh token is spent and a new pair issued. Reusing a spent token revokes the session."""
    response.headers.update(NO_STORE)
    return await _with_user(service, await service.refresh(data.refresh_token))


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401))
async def logout(auth: CurrentAuth, service: Service) -> None:
    """Revoke the current session: its refresh token and, at once, its access tokens."""
    await service.logout(auth.user.id, auth.session_id)


@router.get("/me", response_model=MeRead, responses=errors(401))
async def me(user: CurrentUser, service: Service, response: Response) -> MeRead:
    """The current user with their organizations and roles."""
    response.headers.update(NO_STORE)
    rows = await service.memberships(user.id)
    base = UserRead.model_validate(user)
    return MeRead(
        **base.model_dump(),
        memberships=[MembershipBrief(organization_id=o, name=n, role=r) for o, n, r in rows],
    )


@router.get("/sessions", response_model=Page[SessionRead], responses=errors(401, 422))
async def sessions(
    auth: CurrentAuth,
    service: Service,
    response: Response,
    paging: Paging,
) -> Page[SessionRead]:
    """My active sessions, newest first; `current` marks the one this token belongs to."""
    response.headers.update(NO_STORE)
    rows, total = await service.list_sessions(auth.user.id, paging.limit, paging.offset)
    items = [from_row(SessionRead, s, current=s.id == auth.session_id) for s in rows]
    return paging.page(items, total)


@router.delete(
    "/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401, 404, 422)
)
async def revoke_session(session_id: Id, auth: CurrentAuth, service: Service) -> None:
    """Revoke one of my sessions (another user's session is 404)."""
    await service.revoke_one(auth.user.id, session_id)


@router.post("/password", status_code=status.HTTP_204_NO_CONTENT, responses=errors(400, 401, 422, 429))
async def change_password(
    data: PasswordChange, auth: CurrentAuth, service: Service, limiter: RateLimiterDep
) -> None:
    """Change my password; every other session of mine is revoked. Wrong current passwords count
    against the account like failed logins (429 past `RATE_LIMIT_LOGIN_PER_ACCOUNT`)."""
    await service.change_password(auth.user, auth.session_id, data, limiter)
