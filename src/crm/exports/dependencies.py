"""Export request pieces: the caller's permissions, each entity's list filters, and the refusal of
query parameters the entity's list does not know (422 before any byte is streamed)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from crm.companies.repository import CompanyFilters
from crm.contacts.repository import ContactFilters
from crm.core.db import SessionDep
from crm.core.errors import Forbidden, UnprocessableEntity
from crm.core.schemas import UtcDatetime
from crm.custom_fields.service import CustomFieldService
from crm.deals.repository import DealFilters
from crm.deals.schemas import Status as DealStatus
from crm.organizations.dependencies import Tenant, TenantDep, require
from crm.projects.repository import ProjectFilters
from crm.projects.schemas import Status as ProjectStatus
from crm.records.repository import RecordFilters
from crm.records.router import OptionalId, record_filters

AmountBound = Annotated[Decimal | None, Query(ge=0, lt=Decimal("1e16"), description="Decimal, e.g. 1000.50")]
CUSTOM_FIELD_PREFIX = "cf."


def exporter(read_permission: str) -> Callable[..., Awaitable[Tenant]]:
    """Dependency: the tenant, if the caller may run exports (`exports:run`) and read the records."""

    async def dependency(tenant: Annotated[Tenant, Depends(require("exports:run"))]) -> Tenant:
        if not tenant.can(read_permission):
            raise Forbidden(f"This needs the {read_permission!r} permission")
        return tenant

    dependency.__name__ = f"export_{read_permission.replace(':', '_')}"
    return dependency


def _query_names(dependant: Dependant) -> set[str]:
    """The query parameters a route declares: its own and its dependencies' (a short walk)."""
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def known_params_only(request: Request) -> None:
    """422 for a query parameter the route does not declare (custom field filters `cf.<key>` are
    checked against the definitions by the filters themselves): a typo must not export everything."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):  # pragma: no cover - always set by the router
        return
    declared = _query_names(route.dependant)
    unknown = sorted(
        {k for k in request.query_params if k not in declared and not k.startswith(CUSTOM_FIELD_PREFIX)}
    )
    if unknown:
        errors: list[dict[str, Any]] = [
            {"loc": ["query", name], "msg": "unknown query parameter", "type": "extra_forbidden"}
            for name in unknown
        ]
        raise UnprocessableEntity(f"{unknown[0]}: unknown query parameter", errors=errors)


async def contact_filters(
    common: Annotated[RecordFilters, Depends(record_filters("contact"))],
    q: Annotated[str | None, Query(max_length=200, description="Name, email, phone or company")] = None,
    email: Annotated[str | None, Query(max_length=320)] = None,
    company_id: OptionalId = None,
) -> ContactFilters:
    """The filters of `GET /contacts`."""
    return ContactFilters(**vars(common), q=q, email=email, company_id=company_id)


async def company_filters(
    common: Annotated[RecordFilters, Depends(record_filters("company"))],
    q: Annotated[str | None, Query(max_length=200, description="Name, INN or email")] = None,
    inn: Annotated[str | None, Query(max_length=12)] = None,
    industry: Annotated[str | None, Query(max_length=200, description="Exact, case-insensitive")] = None,
) -> CompanyFilters:
    """The filters of `GET /companies`."""
    return CompanyFilters(**vars(common), q=q, inn=inn, industry=industry)


async def deal_filters(
    request: Request,
    db: SessionDep,
    tenant: TenantDep,
    pipeline_id: OptionalId = None,
    stage: Annotated[str | None, Query(max_length=50)] = None,
    status: DealStatus | None = None,
    owner_id: OptionalId = None,
    contact_id: OptionalId = None,
    company_id: OptionalId = None,
    amount_min: AmountBound = None,
    amount_max: AmountBound = None,
    q: Annotated[str | None, Query(max_length=200, description="Part of the title")] = None,
    created_from: UtcDatetime | None = None,
    created_to: UtcDatetime | None = None,
) -> DealFilters:
    """The filters of `GET /deals`."""
    cf = await CustomFieldService(db, tenant.organization_id).filters("deal", request.query_params)
    return DealFilters(
        owner_id=owner_id,
        created_from=created_from,
        created_to=created_to,
        custom_fields=cf,
        pipeline_id=pipeline_id,
        stage=stage,
        status=status,
        contact_id=contact_id,
        company_id=company_id,
        amount_min=amount_min,
        amount_max=amount_max,
        q=q,
    )


async def project_filters(
    request: Request,
    db: SessionDep,
    tenant: TenantDep,
    status: ProjectStatus | None = None,
    industry_id: OptionalId = None,
    district_id: OptionalId = None,
    curator_id: OptionalId = None,
    client_id: OptionalId = None,
    q: Annotated[str | None, Query(max_length=200, description="Name, code, city or description")] = None,
    amount_min: AmountBound = None,
    amount_max: AmountBound = None,
    created_from: UtcDatetime | None = None,
    created_to: UtcDatetime | None = None,
) -> ProjectFilters:
    """The filters of `GET /projects` (`amount_*` bound the requested support)."""
    cf = await CustomFieldService(db, tenant.organization_id).filters("project", request.query_params)
    return ProjectFilters(
        created_from=created_from,
        created_to=created_to,
        custom_fields=cf,
        status=status,
        industry_id=industry_id,
        district_id=district_id,
        curator_id=curator_id,
        client_id=client_id,
        q=q,
        amount_min=amount_min,
        amount_max=amount_max,
    )
