"""The tenant of a request and permission checks.

`X-Organization-ID` routes: not a member → 403. Without the header, a caller with exactly one
membership acts in that organization; with several → 400 `organization_required` listing them.
The header is declared as the `Organization` security scheme (an API key in a header), so Swagger
UI's Authorize sets it once for every call.
`/organizations/{id}/…` routes: not a member → 404, member without the permission → 403.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import structlog
from fastapi import Depends, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader
from sqlalchemy.ext.asyncio import AsyncSession

from crm.api_keys.service import authenticate_api_key
from crm.auth.dependencies import ApiKeyValue, BearerToken, authenticate_bearer
from crm.core.db import SessionDep
from crm.core.errors import Forbidden, Unauthorized
from crm.core.redis import SafeRedis
from crm.core.schemas import BIGINT_MAX
from crm.organizations.access import member_access
from crm.organizations.exceptions import NotAMember, OrganizationNotFound, OrganizationRequired
from crm.organizations.permissions import role_permissions
from crm.organizations.repository import OrganizationRepository


@dataclass(frozen=True, slots=True)
class Tenant:
    """The organization a request acts in, and what the caller may do there."""

    organization_id: int
    permissions: frozenset[str]
    user_id: int | None = None
    role: str | None = None
    api_key_id: int | None = None
    #: For an API key: the member it acts for (its creator), whose current role bounds its scopes.
    acting_for: int | None = None

    def can(self, permission: str) -> bool:
        return permission in self.permissions


#: The `X-Organization-ID` header as a security scheme.
organization_scheme = APIKeyHeader(
    name="X-Organization-ID",
    scheme_name="Organization",
    auto_error=False,
    description=(
        "The id of the organization to act in. Optional for a user with one membership; "
        "not needed with an API key (a key is bound to its organization)."
    ),
)


def _organization_id(raw: str | None) -> int | None:
    """The header's value as an organization id; anything but a positive BIGINT → 422."""
    if raw is None:
        return None
    value = raw.strip()
    if value.isascii() and value.isdigit() and 1 <= int(value) <= BIGINT_MAX:
        return int(value)
    raise RequestValidationError(
        [
            {
                "loc": ("header", "X-Organization-ID"),
                "msg": f"Input should be an organization id (an integer from 1 to {BIGINT_MAX})",
                "type": "int_parsing",
                "input": raw,
            }
        ]
    )


async def organization_header(
    request: Request, _: Annotated[str | None, Depends(organization_scheme)]
) -> int | None:
    # Read from the request itself: the scheme treats an empty header as absent, this API as invalid.
    return _organization_id(request.headers.get("x-organization-id"))


OrgHeader = Annotated[int | None, Depends(organization_header)]


async def _default_organization(db: SessionDep, user_id: int) -> int:
    """The caller's only organization; several (or none) → 400 `organization_required`."""
    rows, total = await OrganizationRepository(db).list_for_user(user_id, limit=100, offset=0)
    if total == 1:
        return rows[0][0].id
    organizations = sorted((org for org, _ in rows), key=lambda org: org.id)
    raise OrganizationRequired([{"id": org.id, "name": org.name} for org in organizations])


async def _resolve(
    request: Request,
    db: SessionDep,
    token: str | None,
    api_key: str | None,
    organization_id: int | None,
    *,
    from_path: bool,
) -> Tenant:
    if token:
        claims = await authenticate_bearer(request, db, token, check_session=False)
        if organization_id is None:
            organization_id = await _default_organization(db, claims.user_id)
        # One Redis round trip checks the session and finds the caller's role.
        access = await member_access(request.app.state.redis, db, claims, organization_id)
        if access is None:
            raise OrganizationNotFound() if from_path else NotAMember()
        role, custom_permissions = access
        permissions = role_permissions(role, custom_permissions)
        tenant = Tenant(organization_id, permissions, user_id=claims.user_id, role=role)
    elif api_key:
        key_access = await authenticate_api_key(db, api_key)
        key = key_access.key
        if organization_id is not None and organization_id != key.organization_id:
            raise OrganizationNotFound() if from_path else NotAMember()
        tenant = Tenant(
            key.organization_id, key_access.scopes, api_key_id=key.id, acting_for=key.created_by_id
        )
    else:
        raise Unauthorized()
    structlog.contextvars.bind_contextvars(organization_id=tenant.organization_id)
    return tenant


async def get_tenant(
    request: Request,
    db: SessionDep,
    token: BearerToken,
    api_key: ApiKeyValue,
    organization_id: OrgHeader = None,
) -> Tenant:
    return await _resolve(request, db, token, api_key, organization_id, from_path=False)


TenantDep = Annotated[Tenant, Depends(get_tenant)]


async def get_path_tenant(
    request: Request,
    db: SessionDep,
    token: BearerToken,
    api_key: ApiKeyValue,
    organization_id: Annotated[int, Path(ge=1, le=BIGINT_MAX)],
) -> Tenant:
    return await _resolve(request, db, token, api_key, organization_id, from_path=True)


PathTenant = Annotated[Tenant, Depends(get_path_tenant)]


def _requiring(
    permission: str, tenant_dependency: Callable[..., Awaitable[Tenant]], name: str
) -> Callable[..., Coroutine[Any, Any, Tenant]]:
    # `Depends` as a default: the annotations of this module are strings, evaluated in its globals.
    async def dependency(tenant: Tenant = Depends(tenant_dependency)) -> Tenant:
        if not tenant.can(permission):
            raise Forbidden(f"This needs the {permission!r} permission")
        return tenant

    dependency.__name__ = f"{name}_{permission.replace(':', '_')}"
    return dependency


def require(permission: str) -> Callable[..., Coroutine[Any, Any, Tenant]]:
    """Dependency for `X-Organization-ID` routes: the tenant, if the caller holds `permission`."""
    return _requiring(permission, get_tenant, "require")


def require_in_path(permission: str) -> Callable[..., Coroutine[Any, Any, Tenant]]:
    """Dependency for `/organizations/{organization_id}/…` routes."""
    return _requiring(permission, get_path_tenant, "require_path")


S = TypeVar("S")


def tenant_service(
    factory: Callable[[AsyncSession, Tenant, SafeRedis], S],
    tenant_dependency: Callable[..., Awaitable[Tenant]],
) -> Callable[..., Awaitable[S]]:
    """Dependency: the service `factory(session, tenant, redis)` for the tenant that
    `tenant_dependency` (e.g. `require("tasks:read")`) admits; the service keeps it as `.tenant`."""

    async def dependency(request: Request, db: SessionDep, tenant: Tenant = Depends(tenant_dependency)) -> S:
        return factory(db, tenant, request.app.state.redis)

    return dependency


def principal_of(tenant: Tenant) -> str:
    """Who is acting, for scoping idempotency keys and similar per-caller state."""
    who = f"u{tenant.user_id}" if tenant.user_id is not None else f"k{tenant.api_key_id}"
    return f"{who}|o{tenant.organization_id}"
