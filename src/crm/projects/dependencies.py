from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request

from crm.core.db import SessionDep
from crm.core.schemas import UtcDatetime
from crm.organizations.dependencies import TenantDep
from crm.projects.repository import ProjectFilters
from crm.projects.schemas import Status
from crm.records.router import AmountBound, OptionalId, list_filters


@list_filters("project", ProjectFilters)
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
) -> None:
    """The filters of `GET /projects` (and its export): `amount_min`/`amount_max` bound the requested
    support; custom fields as `cf.<key>=value`."""
