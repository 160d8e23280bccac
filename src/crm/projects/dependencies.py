from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request

from crm.core.db import SessionDep
from crm.core.request_checks import takes_custom_field_filters
from crm.core.schemas import UtcDatetime
from crm.organizations.dependencies import TenantDep
from crm.projects.repository import ProjectFilters
from crm.projects.schemas import Status
from crm.records.router import AmountBound, OptionalId, custom_field_filters


@takes_custom_field_filters
async def project_filters(
    request: Request,
    db: SessionDep,
    tenant: TenantDep,
    status: Status | None = None,
    industry_id: OptionalId = None,
    district_id: OptionalId = None,
    curator_id: OptionalId = None,
    client_id: OptionalId = None,
    q: Annotated[
        str | None, Query(max_length=200, description="Part of the name, code, city or description")
    ] = None,
    amount_min: AmountBound = None,
    amount_max: AmountBound = None,
    created_from: UtcDatetime | None = None,
    created_to: UtcDatetime | None = None,
) -> ProjectFilters:
    """The filters of `GET /projects` (and its export): `amount_min`/`amount_max` bound the requested
    support; custom fields as `cf.<key>=value`."""
    cf = await custom_field_filters(request, db, tenant, "project", created_from, created_to)
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
