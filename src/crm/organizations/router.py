from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from crm.auth.dependencies import CurrentUser
from crm.core.concurrency import IfMatch, set_etag
from crm.core.db import SessionDep
from crm.core.openapi import errors
from crm.core.schemas import BIGINT_MAX, Page, PageParams, page_params
from crm.organizations.dependencies import Tenant, require_in_path
from crm.organizations.schemas import (
    MemberAdd,
    MemberRead,
    MemberUpdate,
    OrganizationCreate,
    OrganizationRead,
    OrganizationUpdate,
)
from crm.organizations.service import OrganizationService

router = APIRouter(prefix="/organizations", tags=["organizations"])

Paging = Annotated[PageParams, Depends(page_params)]
UserId = Annotated[int, Path(ge=1, le=BIGINT_MAX)]


def get_service(db: SessionDep) -> OrganizationService:
    return OrganizationService(db)


Service = Annotated[OrganizationService, Depends(get_service)]


def _read(org: object, role: str | None) -> OrganizationRead:
    out = OrganizationRead.model_validate(org)
    out.role = role
    return out


@router.post("", status_code=status.HTTP_201_CREATED, response_model=OrganizationRead,
             responses=errors(401, 409, 422))
async def create_organization(
    data: OrganizationCreate, user: CurrentUser, service: Service, response: Response
) -> OrganizationRead:
    """Create an organization; you become its owner. The slug is made from the name when omitted."""
    org = await service.create(data, user)
    response.headers["Location"] = f"/api/v1/organizations/{org.id}"
    set_etag(response, org.version)
    return _read(org, "owner")


@router.get("", response_model=Page[OrganizationRead], responses=errors(401, 422))
async def list_organizations(user: CurrentUser, service: Service, paging: Paging) -> Page[OrganizationRead]:
    """The organizations you are a member of, with your role in each."""
    rows, total = await service.list_mine(user, paging.limit, paging.offset)
    return Page(items=[_read(o, r) for o, r in rows], total=total, limit=paging.limit, offset=paging.offset)


@router.get("/{organization_id}", response_model=OrganizationRead, responses=errors(401, 404, 422))
async def get_organization(
    tenant: Annotated[Tenant, Depends(require_in_path("organization:read"))],
    service: Service,
    response: Response,
) -> OrganizationRead:
    org = await service.get(tenant.organization_id)
    set_etag(response, org.version)
    return _read(org, tenant.role)


@router.put("/{organization_id}", response_model=OrganizationRead,
            responses=errors(401, 403, 404, 409, 412, 422))
async def update_organization(
    data: OrganizationUpdate,
    tenant: Annotated[Tenant, Depends(require_in_path("organization:update"))],
    service: Service,
    response: Response,
    if_match: IfMatch = None,
) -> OrganizationRead:
    """Update name, slug or currency (admin and owner). Honours `If-Match`."""
    org = await service.update(tenant.organization_id, data, if_match)
    set_etag(response, org.version)
    return _read(org, tenant.role)


@router.delete("/{organization_id}", status_code=status.HTTP_204_NO_CONTENT,
               responses=errors(401, 403, 404, 422))
async def delete_organization(
    tenant: Annotated[Tenant, Depends(require_in_path("organization:delete"))], service: Service
) -> None:
    """Delete the organization (owner only). It disappears for everyone at once."""
    await service.delete(tenant.organization_id)


def _member(membership: object, user: object) -> MemberRead:
    return MemberRead(
        user_id=user.id,  # type: ignore[attr-defined]
        email=user.email,  # type: ignore[attr-defined]
        full_name=user.full_name,  # type: ignore[attr-defined]
        role=membership.role,  # type: ignore[attr-defined]
        is_active=user.is_active,  # type: ignore[attr-defined]
        created_at=membership.created_at,  # type: ignore[attr-defined]
    )


@router.get("/{organization_id}/members", response_model=Page[MemberRead], responses=errors(401, 404, 422))
async def list_members(
    tenant: Annotated[Tenant, Depends(require_in_path("members:read"))], service: Service, paging: Paging
) -> Page[MemberRead]:
    rows, total = await service.members(tenant.organization_id, paging.limit, paging.offset)
    return Page(items=[_member(m, u) for m, u in rows], total=total, limit=paging.limit,
                offset=paging.offset)


@router.post("/{organization_id}/members", status_code=status.HTTP_201_CREATED, response_model=MemberRead,
             responses=errors(401, 403, 404, 409, 422))
async def add_member(
    data: MemberAdd,
    tenant: Annotated[Tenant, Depends(require_in_path("members:manage"))],
    service: Service,
    response: Response,
) -> MemberRead:
    """Add a registered user by email with a role (admin+; only owners grant `owner`)."""
    membership, user = await service.add_member(tenant.organization_id, data, tenant.role or "")
    response.headers["Location"] = f"/api/v1/organizations/{tenant.organization_id}/members/{user.id}"
    return _member(membership, user)


@router.patch("/{organization_id}/members/{user_id}", response_model=MemberRead,
              responses=errors(401, 403, 404, 409, 422))
async def change_member_role(
    user_id: UserId,
    data: MemberUpdate,
    tenant: Annotated[Tenant, Depends(require_in_path("members:manage"))],
    service: Service,
) -> MemberRead:
    """Change a member's role. The last owner can never be demoted; only owners touch owners."""
    membership, user = await service.change_role(tenant.organization_id, user_id, data, tenant.role or "")
    return _member(membership, user)


@router.delete("/{organization_id}/members/{user_id}", status_code=status.HTTP_204_NO_CONTENT,
               responses=errors(401, 403, 404, 409, 422))
async def remove_member(
    user_id: UserId,
    tenant: Annotated[Tenant, Depends(require_in_path("members:read"))],
    service: Service,
) -> None:
    """Remove a member (admin+), or leave the organization yourself. The last owner stays."""
    if user_id != tenant.user_id and not tenant.can("members:manage"):
        from crm.core.errors import Forbidden

        raise Forbidden("This needs the 'members:manage' permission")
    await service.remove_member(tenant.organization_id, user_id, tenant.role or "")
