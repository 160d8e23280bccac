from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request

from crm.core.db import SessionDep
from crm.core.schemas import UtcDatetime
from crm.deals.repository import DealFilters
from crm.deals.schemas import Status
from crm.organizations.dependencies import TenantDep
from crm.records.router import AmountBound, OptionalId, list_filters


@list_filters("deal", DealFilters)
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
) -> None:
    """The filters of `GET /deals` (and its export); custom fields as `cf.<key>=value`."""
