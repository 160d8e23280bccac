from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request

from crm.core.db import SessionDep
from crm.core.errors import NotFound
from crm.core.request_checks import takes_custom_field_filters
from crm.core.schemas import UtcDatetime
from crm.custom_fields.service import CustomFieldService
from crm.deals.repository import DealFilters, DealRepository
from crm.deals.schemas import Status
from crm.organizations.dependencies import TenantDep
from crm.records.fields import check_range
from crm.records.router import AmountBound, OptionalId


async def ensure_deal(db: SessionDep, organization_id: int, deal_id: int) -> None:
    """404 unless the deal is live and belongs to the organization."""
    if not await DealRepository(db, organization_id).exists(deal_id):
        raise NotFound("Deal not found")


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
    check_range(created_from, created_to)
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
