from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from crm.core.db import SessionDep
from crm.core.errors import UnprocessableEntity
from crm.core.openapi import errors
from crm.organizations.dependencies import Tenant, require
from crm.project_reports.repository import ReportFilters
from crm.project_reports.schemas import GroupBy, ProjectReport, ProjectStatus, ReportFormat
from crm.project_reports.service import XLSX_MEDIA_TYPE, ReportService, to_csv, to_xlsx
from crm.records.router import OptionalId

router = APIRouter(prefix="/projects", tags=["projects"])

AmountBound = Annotated[
    Decimal | None,
    Query(ge=0, lt=Decimal("1e16"), description="Bound on `requested_support_amount`, e.g. 1000.50"),
]
_DOWNLOADS = {
    200: {
        "description": "The report as JSON, or as a CSV or XLSX download (`format`)",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            XLSX_MEDIA_TYPE: {"schema": {"type": "string"}},
        },
    }
}


@router.get(
    "/report",
    response_model=ProjectReport,
    responses={**_DOWNLOADS, **errors(400, 401, 403, 422)},  # type: ignore[dict-item]
)
async def project_report(
    tenant: Annotated[Tenant, Depends(require("projects:read"))],
    db: SessionDep,
    group_by: GroupBy,
    format: ReportFormat = "json",
    status: ProjectStatus | None = None,
    industry_id: OptionalId = None,
    district_id: OptionalId = None,
    curator_id: OptionalId = None,
    client_id: OptionalId = None,
    q: Annotated[str | None, Query(max_length=200, description="Part of the name or external code")] = None,
    amount_min: AmountBound = None,
    amount_max: AmountBound = None,
) -> object:
    """Counts and sums of live projects per group: own funds, requested and approved support, jobs
    and tax revenue, with the totals. `approved_support_amount` sums the RUB measures that are approved
    or provided. With `group_by=program` a project is counted once in every program it has measures
    in (and under key null when it has none), its approved support split by program; the totals count
    each project once. Takes the filters of the projects list. `format=csv|xlsx` downloads a file."""
    if amount_min is not None and amount_max is not None and amount_min > amount_max:
        error = {"loc": ["query", "amount_min"], "msg": "greater than amount_max", "type": "value_error"}
        raise UnprocessableEntity("amount_min is greater than amount_max", errors=[error])
    filters = ReportFilters(
        status, industry_id, district_id, curator_id, client_id, q, amount_min, amount_max
    )
    report = await ReportService(db, tenant.organization_id).report(group_by, filters)
    if format == "json":
        return report
    filename = f"projects-report-{group_by}.{format}"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if format == "csv":
        return Response(to_csv(report), media_type="text/csv; charset=utf-8", headers=headers)
    return Response(to_xlsx(report), media_type=XLSX_MEDIA_TYPE, headers=headers)
