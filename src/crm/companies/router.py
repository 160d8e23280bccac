from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends

from crm.companies.dependencies import company_filters
from crm.companies.schemas import CompanyCreate, CompanyDealRead, CompanyRead, CompanyReplace, CompanyUpdate
from crm.companies.service import CompanyService
from crm.contacts.repository import SORTS as CONTACT_SORTS
from crm.contacts.schemas import ContactRead
from crm.core.openapi import errors
from crm.core.schemas import Id, Page, Paging, sort_param
from crm.organizations.dependencies import Tenant, require
from crm.records.kit import RecordKit, RouteDocs, Schemas

companies = RecordKit(
    name="companies",
    service=CompanyService,
    docs=RouteDocs(
        create="""Create a company. The INN is unique among live companies not created by a sync
        (409 `company_inn_taken`); `kind` defaults from it.""",
        delete="Soft-delete (restorable), manager and up; the client of an investment project: owner/admin.",
        restore="Bring back a deleted company (owner/admin); 409 if its INN was taken meanwhile.",
    ),
    schemas=Schemas(CompanyCreate, CompanyReplace, CompanyUpdate, CompanyRead),
    filters=company_filters,
)

#: The record routes, and the company's own: its contacts and deals.
router = companies.router()
Reader = Annotated[Tenant, Depends(require("companies:read"))]
Service = Annotated[CompanyService, Depends(companies.provide())]
if TYPE_CHECKING:
    ContactSort = str | None
else:
    ContactSort = sort_param(*CONTACT_SORTS)


@router.get(
    "/{company_id}/contacts", response_model=Page[ContactRead], responses=errors(400, 401, 403, 404, 422)
)
async def list_company_contacts(
    company_id: Id,
    tenant: Reader,
    _contacts: Annotated[Tenant, Depends(require("contacts:read"))],
    service: Service,
    paging: Paging,
    sort: ContactSort = None,
) -> object:
    """The company's live contacts, newest first."""
    rows, total = await service.contacts(company_id, sort, paging.limit, paging.offset)
    return paging.page(rows, total)


companies.add_page(
    router,
    "deals",
    CompanyDealRead,
    CompanyService.deals,
    name="list_company_deals",
    doc="The company's live deals, newest first.",
    needs=("deals:read",),
)
