from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response, status

from crm.auth.dependencies import Claims, CurrentUser
from crm.core.concurrency import IfMatch, set_etag, with_etag
from crm.core.db import SessionDep
from crm.core.idempotency import IdempotencyDep
from crm.core.idempotent import create_once
from crm.core.openapi import creates, errors
from crm.core.schemas import BIGINT_MAX, Page, Paging, from_row
from crm.models import Membership, Organization, User
from crm.organizations.dependencies import Tenant, principal_of, require_in_path, tenant_service
from crm.organizations.permissions import PERMISSION_DESCRIPTIONS, ROLE_ORDER, permissions_for
from crm.organizations.schemas import (
    MemberAdd,
    MemberRead,
    MemberUpdate,
    OrganizationCreate,
    OrganizationRead,
    OrganizationUpdate,
    PermissionRead,
    RoleCreate,
    RoleListed,
    RoleRead,
    RoleReplace,
)
from crm.organizations.service import OrganizationService, RoleService

router = APIRouter(prefix="/organizations", tags=["organizations"])

UserId = Annotated[int, Path(ge=1, le=BIGINT_MAX)]
RoleId = Annotated[int, Path(ge=1, le=BIGINT_MAX)]
#: Member answers carry names and emails: personal data is never cached.
NO_STORE = {"Cache-Control": "no-store"}


async def get_service(request: Request, db: SessionDep) -> OrganizationService:
    return OrganizationService(db, request.app.state.redis)


Service = Annotated[OrganizationService, Depends(get_service)]


def _read(org: Organization, role: str | None) -> OrganizationRead:
    out = OrganizationRead.model_validate(org)
    out.role = role
    return out


def _member(membership: Membership, user: User) -> MemberRead:
    return from_row(MemberRead, user, user_id=user.id, role=membership.role, created_at=membership.created_at)


@creates(router, "", OrganizationRead, 401, 409, 422)
async def create_organization(
    data: OrganizationCreate, user: CurrentUser, service: Service, response: Response, idem: IdempotencyDep
) -> object:
    """Create an organization; you become its owner. The slug is made from the name when omitted."""

    async def create() -> OrganizationRead:
        org = await service.create(data, user)
        response.headers["Location"] = f"/api/v1/organizations/{org.id}"
        set_etag(response, org.version)
        return _read(org, "owner")

    return await create_once(idem, f"u{user.id}", response, create)


@router.get("", response_model=Page[OrganizationRead], responses=errors(401, 422))
async def list_organizations(user: CurrentUser, service: Service, paging: Paging) -> Page[OrganizationRead]:
    """The organizations you are a member of, with your role in each."""
    rows, total = await service.list_mine(user, paging.limit, paging.offset)
    return paging.page([_read(o, r) for o, r in rows], total)


@router.get("/{organization_id}", response_model=OrganizationRead, responses=errors(401, 403, 404, 422))
async def get_organization(
    tenant: Annotated[Tenant, Depends(require_in_path("organization:read"))],
    service: Service,
    response: Response,
) -> OrganizationRead:
    """One of your organizations with your role in it; `ETag` carries its version."""
    org = await service.get(tenant.organization_id)
    set_etag(response, org.version)
    return _read(org, tenant.role)


@router.put(
    "/{organization_id}", response_model=OrganizationRead, responses=errors(401, 403, 404, 409, 412, 422)
)
async def update_organization(
    data: OrganizationUpdate,
    tenant: Annotated[Tenant, Depends(require_in_path("organization:update"))],
    service: Service,
    response: Response,
    if_match: IfMatch = None,
) -> OrganizationRead:
    """Update name, slug or currency (admin and owner). Honours `If-Match`."""
    org = await service.update(tenant, data, if_match)
    set_etag(response, org.version)
    return _read(org, tenant.role)


@router.delete(
    "/{organization_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401, 403, 404, 422)
)
async def delete_organization(
    tenant: Annotated[Tenant, Depends(require_in_path("organization:delete"))], service: Service
) -> None:
    """Delete the organization (owner only). It disappears for everyone at once."""
    await service.delete(tenant)


@router.get(
    "/{organization_id}/members", response_model=Page[MemberRead], responses=errors(401, 403, 404, 422)
)
async def list_members(
    tenant: Annotated[Tenant, Depends(require_in_path("members:read"))],
    service: Service,
    paging: Paging,
    response: Response,
) -> Page[MemberRead]:
    """The members with their roles, newest first."""
    response.headers.update(NO_STORE)
    rows, total = await service.members(tenant, paging.limit, paging.offset)
    return paging.page([_member(m, u) for m, u in rows], total)


@creates(router, "/{organization_id}/members", MemberRead, 401, 403, 404, 409, 422)
async def add_member(
    data: MemberAdd,
    tenant: Annotated[Tenant, Depends(require_in_path("members:manage"))],
    service: Service,
    response: Response,
    idem: IdempotencyDep,
) -> object:
    """Add a registered user by email with a built-in or custom role (admin+; only owners grant
    `owner`; nobody grants a role wider than their own)."""

    async def add() -> MemberRead:
        membership, user = await service.add_member(tenant, data)
        response.headers["Location"] = f"/api/v1/organizations/{tenant.organization_id}/members/{user.id}"
        response.headers.update(NO_STORE)
        return _member(membership, user)

    return await create_once(idem, principal_of(tenant), response, add)


@router.patch(
    "/{organization_id}/members/{user_id}",
    response_model=MemberRead,
    responses=errors(401, 403, 404, 409, 422),
)
async def change_member_role(
    user_id: UserId,
    data: MemberUpdate,
    tenant: Annotated[Tenant, Depends(require_in_path("members:manage"))],
    service: Service,
    response: Response,
) -> MemberRead:
    """Change a member's role. The last owner can never be demoted; only owners touch owners."""
    membership, user = await service.change_role(tenant, user_id, data)
    response.headers.update(NO_STORE)
    return _member(membership, user)


@router.delete(
    "/{organization_id}/members/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(401, 403, 404, 409, 422),
)
async def remove_member(
    user_id: UserId,
    tenant: Annotated[Tenant, Depends(require_in_path("members:read"))],
    service: Service,
) -> None:
    """Remove a member (`members:manage`; only owners remove owners), or leave the organization
    yourself. The last owner stays."""
    await service.remove_member(tenant, user_id)


# Custom roles ----------------------------------------------------------------------------------


#: The role service for a member holding the permission (404 for others, 403 without it).
RoleReader = Annotated[RoleService, Depends(tenant_service(RoleService, require_in_path("members:read")))]
RoleManager = Annotated[RoleService, Depends(tenant_service(RoleService, require_in_path("roles:manage")))]


@router.get("/{organization_id}/roles", response_model=Page[RoleListed], responses=errors(401, 403, 404, 422))
async def list_roles(service: RoleReader, paging: Paging) -> Page[RoleListed]:
    """Every role of the organization: the built-in `owner`, `admin`, `manager` and `member` first
    (`built_in: true`, widest first), then the custom roles, newest first; each with its permissions."""
    built_in = [
        RoleListed(name=role.value, built_in=True, permissions=sorted(permissions_for(role.value)))
        for role in ROLE_ORDER
    ]
    shown_built_in = built_in[paging.offset : paging.offset + paging.limit]
    custom_offset = max(paging.offset - len(built_in), 0)
    custom_limit = paging.limit - len(shown_built_in)
    rows, custom_total = await service.list(max(custom_limit, 1), custom_offset)
    custom = [
        RoleListed(built_in=False, **RoleRead.model_validate(r).model_dump()) for r in rows[:custom_limit]
    ]
    return paging.page([*shown_built_in, *custom], len(built_in) + custom_total)


@creates(router, "/{organization_id}/roles", RoleRead, 401, 403, 404, 409, 422)
async def create_role(
    data: RoleCreate, service: RoleManager, response: Response, idem: IdempotencyDep
) -> object:
    """Define a custom role: a name (not a built-in one) and permissions you hold yourself.
    Owner-only powers (`organization:delete`, `owners:manage`) stay with owners."""
    tenant = service.tenant

    async def create() -> RoleRead:
        role = await service.create(data)
        response.headers["Location"] = f"/api/v1/organizations/{tenant.organization_id}/roles/{role.id}"
        return RoleRead.model_validate(with_etag(response, role))

    return await create_once(idem, principal_of(tenant), response, create)


@router.get(
    "/{organization_id}/roles/{role_id}", response_model=RoleRead, responses=errors(401, 403, 404, 422)
)
async def get_role(role_id: RoleId, service: RoleReader, response: Response) -> RoleRead:
    """One custom role; `ETag` carries its version."""
    return RoleRead.model_validate(with_etag(response, await service.get(role_id)))


@router.put(
    "/{organization_id}/roles/{role_id}",
    response_model=RoleRead,
    responses=errors(401, 403, 404, 409, 412, 422),
)
async def replace_role(
    role_id: RoleId, data: RoleReplace, service: RoleManager, response: Response, if_match: IfMatch = None
) -> RoleRead:
    """Replace a custom role's name and permissions; its members get the new permissions at once
    (and keep the role when it is renamed). Honours `If-Match`."""
    return RoleRead.model_validate(with_etag(response, await service.replace(role_id, data, if_match)))


@router.delete(
    "/{organization_id}/roles/{role_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(401, 403, 404, 409, 422),
)
async def delete_role(role_id: RoleId, service: RoleManager) -> None:
    """Delete a custom role nobody holds any more (else 409 `role_in_use`)."""
    await service.delete(role_id)


#: `GET /api/v1/permissions`: what each permission string means.
permissions_router = APIRouter(prefix="/permissions", tags=["organizations"])


@permissions_router.get("", response_model=list[PermissionRead], responses=errors(401))
async def list_permissions(_: Claims) -> list[PermissionRead]:
    """Every permission a role or an API key can hold, with a one-line description."""
    return [
        PermissionRead(name=name, description=text) for name, text in sorted(PERMISSION_DESCRIPTIONS.items())
    ]
