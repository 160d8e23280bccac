from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request

from crm.core.db import SessionDep
from crm.core.request_checks import takes_custom_field_filters
from crm.core.schemas import UtcDatetime
from crm.deals.repository import DealFilters
from crm.deals.schemas import Status
from crm.organizations.dependencies import TenantDep
from crm.records.router import AmountBound, OptionalId, custom_field_filters


@takes_custom_field_filters
async def deal_filters(
    request: Request,
    db: SessionDep,
    tenant: TenantDep,
    pipeline_id: OptionalId = None,
    stage: Annotated[str | None, Query(max_length=50)] = None,
    status: Status | None = None,
    owner_id: OptionalId = None,
    contact_id: OptionalId = None,
    company_id: OptionalId = None,
    amount_min: AmountBound = None,
    amount_max: AmountBound = None,
    q: Annotated[str | None, Query(max_length=200, description="Part of the title")] = None,
    created_from: UtcDatetime | None = None,
    created_to: UtcDatetime | None = None,
) -> DealFilters:
    """The filters of `GET /deals` (and its export); custom fields as `cf.<key>=value`."""
    cf = await custom_field_filters(request, db, tenant, "deal", created_from, created_to)
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
