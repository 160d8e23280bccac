from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from crm.activities.router import add_timeline_routes
from crm.companies.dependencies import ensure_company
from crm.companies.repository import CompanyFilters
from crm.companies.schemas import CompanyCreate, CompanyDealRead, CompanyRead, CompanyReplace, CompanyUpdate
from crm.companies.service import CompanyService
from crm.contacts.schemas import ContactRead
from crm.core.concurrency import IfMatch, set_etag
from crm.core.db import SessionDep
from crm.core.idempotency import IdempotencyDep
from crm.core.openapi import errors
from crm.core.schemas import Id, Page, PageParams, page_params, sort_param
from crm.models import Company
from crm.organizations.dependencies import Tenant, require
from crm.records.fast_read import fast_read
from crm.records.repository import RecordFilters
from crm.records.router import idempotent_create, record_filters

router = APIRouter(prefix="/companies", tags=["companies"])
PATH = "/api/v1/companies"

Reader = Annotated[Tenant, Depends(require("companies:read"))]
Writer = Annotated[Tenant, Depends(require("companies:write"))]
Paging = Annotated[PageParams, Depends(page_params)]
CommonFilters = Annotated[RecordFilters, Depends(record_filters("company"))]
if TYPE_CHECKING:
    CompanySort = str | None
    ContactSort = str | None
else:
    CompanySort = sort_param("created_at", "updated_at", "name")
    ContactSort = sort_param("created_at", "updated_at", "full_name")


def service(request: Request, db: SessionDep, tenant: Tenant) -> CompanyService:
    return CompanyService(db, tenant, request.app.state.redis)


@router.get("", response_model=Page[CompanyRead], responses=errors(400, 401, 403, 422))
async def list_companies(
    request: Request,
    tenant: Reader,
    db: SessionDep,
    paging: Paging,
    common: CommonFilters,
    q: Annotated[str | None, Query(max_length=200, description="Name, INN or email")] = None,
    inn: Annotated[str | None, Query(max_length=12)] = None,
    industry: Annotated[str | None, Query(max_length=200, description="Exact, case-insensitive")] = None,
    sort: CompanySort = None,
) -> object:
    """Companies, newest first. Custom fields filter as `cf.<key>=value`."""
    filters = CompanyFilters(**vars(common), q=q, inn=inn, industry=industry)
    rows, total = await service(request, db, tenant).list(filters, sort, paging.limit, paging.offset)
    return Page(items=rows, total=total, limit=paging.limit, offset=paging.offset)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=CompanyRead,
    responses=errors(400, 401, 403, 409, 422),
)
async def create_company(
    data: CompanyCreate,
    request: Request,
    tenant: Writer,
    db: SessionDep,
    response: Response,
    idem: IdempotencyDep,
) -> object:
    """Create a company. The INN is unique among live companies not created by a sync
    (409 `company_inn_taken`); `kind` defaults from it."""
    return await idempotent_create(
        idem, tenant, response, lambda: service(request, db, tenant).create(data), CompanyRead, PATH
    )


@router.get("/{company_id}", response_model=CompanyRead, responses=errors(400, 401, 403, 404, 422))
@fast_read(Company, "companies:read", CompanyRead)
async def get_company(
    company_id: Id, request: Request, tenant: Reader, db: SessionDep, response: Response
) -> object:
    """One company; its `ETag` is the version to send back in `If-Match`."""
    company = await service(request, db, tenant).get(company_id)
    set_etag(response, company.version)
    return company


@router.put("/{company_id}", response_model=CompanyRead, responses=errors(400, 401, 403, 404, 409, 412, 422))
async def replace_company(
    company_id: Id,
    data: CompanyReplace,
    request: Request,
    tenant: Writer,
    db: SessionDep,
    response: Response,
    if_match: IfMatch = None,
) -> object:
    """Replace every editable field. Honours `If-Match` (412 when stale)."""
    company = await service(request, db, tenant).replace(company_id, data, if_match)
    set_etag(response, company.version)
    return company


@router.patch(
    "/{company_id}", response_model=CompanyRead, responses=errors(400, 401, 403, 404, 409, 412, 422)
)
async def update_company(
    company_id: Id,
    data: CompanyUpdate,
    request: Request,
    tenant: Writer,
    db: SessionDep,
    response: Response,
    if_match: IfMatch = None,
) -> object:
    """Change the fields sent. Honours `If-Match` (412 when stale)."""
    company = await service(request, db, tenant).update(company_id, data, if_match)
    set_etag(response, company.version)
    return company


@router.delete(
    "/{company_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(400, 401, 403, 404, 422)
)
async def delete_company(
    company_id: Id,
    request: Request,
    tenant: Annotated[Tenant, Depends(require("companies:delete"))],
    db: SessionDep,
) -> None:
    """Soft-delete (restorable), manager and up; the client of an investment project: owner/admin."""
    await service(request, db, tenant).delete(company_id)


@router.post(
    "/{company_id}/restore", response_model=CompanyRead, responses=errors(400, 401, 403, 404, 409, 422)
)
async def restore_company(
    company_id: Id,
    request: Request,
    tenant: Annotated[Tenant, Depends(require("records:restore"))],
    db: SessionDep,
    response: Response,
) -> object:
    """Bring back a deleted company (owner/admin); 409 if its INN was taken meanwhile."""
    company = await service(request, db, tenant).restore(company_id)
    set_etag(response, company.version)
    return company


@router.get(
    "/{company_id}/contacts", response_model=Page[ContactRead], responses=errors(400, 401, 403, 404, 422)
)
async def list_company_contacts(
    company_id: Id,
    request: Request,
    tenant: Reader,
    _contacts: Annotated[Tenant, Depends(require("contacts:read"))],
    db: SessionDep,
    paging: Paging,
    sort: ContactSort = None,
) -> object:
    """The company's live contacts, newest first."""
    rows, total = await service(request, db, tenant).contacts(company_id, sort, paging.limit, paging.offset)
    return Page(items=rows, total=total, limit=paging.limit, offset=paging.offset)


@router.get(
    "/{company_id}/deals", response_model=Page[CompanyDealRead], responses=errors(400, 401, 403, 404, 422)
)
async def list_company_deals(
    company_id: Id,
    request: Request,
    tenant: Reader,
    _deals: Annotated[Tenant, Depends(require("deals:read"))],
    db: SessionDep,
    paging: Paging,
) -> object:
    """The company's live deals, newest first."""
    rows, total = await service(request, db, tenant).deals(company_id, paging.limit, paging.offset)
    return Page(items=rows, total=total, limit=paging.limit, offset=paging.offset)


add_timeline_routes(router, "company", "companies:read", ensure_company)
