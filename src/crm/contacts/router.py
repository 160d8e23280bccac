from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from crm.activities.router import add_timeline_routes
from crm.contacts.dependencies import ensure_contact
from crm.contacts.repository import ContactFilters
from crm.contacts.schemas import ContactCreate, ContactRead, ContactReplace, ContactUpdate
from crm.contacts.service import ContactService
from crm.core.concurrency import IfMatch, set_etag
from crm.core.db import SessionDep
from crm.core.idempotency import IdempotencyDep
from crm.core.openapi import errors
from crm.core.schemas import Id, Page, PageParams, page_params, sort_param
from crm.models import Contact
from crm.organizations.dependencies import Tenant, require
from crm.records.fast_read import fast_read
from crm.records.repository import RecordFilters
from crm.records.router import OptionalId, idempotent_create, record_filters

router = APIRouter(prefix="/contacts", tags=["contacts"])
PATH = "/api/v1/contacts"

Reader = Annotated[Tenant, Depends(require("contacts:read"))]
Writer = Annotated[Tenant, Depends(require("contacts:write"))]
Paging = Annotated[PageParams, Depends(page_params)]
if TYPE_CHECKING:
    ContactSort = str | None
else:
    ContactSort = sort_param("created_at", "updated_at", "full_name")
CommonFilters = Annotated[RecordFilters, Depends(record_filters("contact"))]


def service(request: Request, db: SessionDep, tenant: Tenant) -> ContactService:
    return ContactService(db, tenant, request.app.state.redis)


@router.get("", response_model=Page[ContactRead], responses=errors(400, 401, 403, 422))
async def list_contacts(
    request: Request,
    tenant: Reader,
    db: SessionDep,
    paging: Paging,
    common: CommonFilters,
    q: Annotated[str | None, Query(max_length=200, description="Name, email, phone or company")] = None,
    email: Annotated[str | None, Query(max_length=320)] = None,
    company_id: OptionalId = None,
    sort: ContactSort = None,
) -> object:
    """Contacts, newest first. Custom fields filter as `cf.<key>=value`."""
    filters = ContactFilters(**vars(common), q=q, email=email, company_id=company_id)
    rows, total = await service(request, db, tenant).list(filters, sort, paging.limit, paging.offset)
    return Page(items=rows, total=total, limit=paging.limit, offset=paging.offset)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ContactRead,
    responses=errors(400, 401, 403, 409, 422),
)
async def create_contact(
    data: ContactCreate,
    request: Request,
    tenant: Writer,
    db: SessionDep,
    response: Response,
    idem: IdempotencyDep,
) -> object:
    """Create a contact. The email is unique among live contacts (409 `contact_email_taken`)."""
    return await idempotent_create(
        idem, tenant, response, lambda: service(request, db, tenant).create(data), ContactRead, PATH
    )


@router.get("/{contact_id}", response_model=ContactRead, responses=errors(400, 401, 403, 404, 422))
@fast_read(Contact, "contacts:read", ContactRead)
async def get_contact(
    contact_id: Id, request: Request, tenant: Reader, db: SessionDep, response: Response
) -> object:
    """One contact; its `ETag` is the version to send back in `If-Match`."""
    contact = await service(request, db, tenant).get(contact_id)
    set_etag(response, contact.version)
    return contact


@router.put("/{contact_id}", response_model=ContactRead, responses=errors(400, 401, 403, 404, 409, 412, 422))
async def replace_contact(
    contact_id: Id,
    data: ContactReplace,
    request: Request,
    tenant: Writer,
    db: SessionDep,
    response: Response,
    if_match: IfMatch = None,
) -> object:
    """Replace every editable field. Honours `If-Match` (412 when stale)."""
    contact = await service(request, db, tenant).replace(contact_id, data, if_match)
    set_etag(response, contact.version)
    return contact


@router.patch(
    "/{contact_id}", response_model=ContactRead, responses=errors(400, 401, 403, 404, 409, 412, 422)
)
async def update_contact(
    contact_id: Id,
    data: ContactUpdate,
    request: Request,
    tenant: Writer,
    db: SessionDep,
    response: Response,
    if_match: IfMatch = None,
) -> object:
    """Change the fields sent. Honours `If-Match` (412 when stale)."""
    contact = await service(request, db, tenant).update(contact_id, data, if_match)
    set_etag(response, contact.version)
    return contact


@router.delete(
    "/{contact_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(400, 401, 403, 404, 409, 422)
)
async def delete_contact(
    contact_id: Id,
    request: Request,
    tenant: Annotated[Tenant, Depends(require("contacts:delete"))],
    db: SessionDep,
) -> None:
    """Soft-delete (restorable). A contact with open deals cannot be deleted (409)."""
    await service(request, db, tenant).delete(contact_id)


@router.post(
    "/{contact_id}/restore", response_model=ContactRead, responses=errors(400, 401, 403, 404, 409, 422)
)
async def restore_contact(
    contact_id: Id,
    request: Request,
    tenant: Annotated[Tenant, Depends(require("records:restore"))],
    db: SessionDep,
    response: Response,
) -> object:
    """Bring back a deleted contact (owner/admin); 409 if its email was taken meanwhile."""
    contact = await service(request, db, tenant).restore(contact_id)
    set_etag(response, contact.version)
    return contact


add_timeline_routes(router, "contact", "contacts:read", ensure_contact)
