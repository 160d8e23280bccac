"""The tenant of a request and permission checks.

`X-Organization-ID` routes: missing header → 400, not a member → 403.
`/organizations/{id}/…` routes: not a member → 404, member without the permission → 403.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

import structlog
from fastapi import Depends, Header, Path, Request

from crm.api_keys.service import authenticate_api_key
from crm.auth.dependencies import ApiKeyValue, BearerToken, authenticate_bearer
from crm.core.db import SessionDep
from crm.core.errors import Forbidden, Unauthorized
from crm.core.schemas import BIGINT_MAX
from crm.organizations.access import member_access
from crm.organizations.exceptions import NotAMember, OrganizationNotFound, OrganizationRequired
from crm.organizations.permissions import role_permissions


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


OrgHeader = Annotated[
    int | None,
    Header(
        alias="X-Organization-ID",
        ge=1,
        le=BIGINT_MAX,
        description="The organization to act in (required with a bearer token).",
    ),
]


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
            raise OrganizationRequired()
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


def require(permission: str) -> Callable[..., Coroutine[Any, Any, Tenant]]:
    """Dependency for `X-Organization-ID` routes: the tenant, if the caller holds `permission`."""

    async def dependency(tenant: TenantDep) -> Tenant:
        if not tenant.can(permission):
            raise Forbidden(f"This needs the {permission!r} permission")
        return tenant

    dependency.__name__ = f"require_{permission.replace(':', '_')}"
    return dependency


def require_in_path(permission: str) -> Callable[..., Coroutine[Any, Any, Tenant]]:
    """Dependency for `/organizations/{organization_id}/…` routes."""

    async def dependency(tenant: PathTenant) -> Tenant:
        if not tenant.can(permission):
            raise Forbidden(f"This needs the {permission!r} permission")
        return tenant

    dependency.__name__ = f"require_path_{permission.replace(':', '_')}"
    return dependency


def principal_of(tenant: Tenant) -> str:
    """Who is acting, for scoping idempotency keys and similar per-caller state."""
    who = f"u{tenant.user_id}" if tenant.user_id is not None else f"k{tenant.api_key_id}"
    return f"{who}|o{tenant.organization_id}"
