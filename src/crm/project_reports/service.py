"""The projects report and its CSV and XLSX downloads."""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from sqlalchemy.ext.asyncio import AsyncSession

from crm.core.validators import money_str
from crm.project_reports.repository import RawRow, ReportFilters, ReportRepository
from crm.project_reports.schemas import ProjectReport, ReportRow, ReportSums

#: The label of the group of projects with no industry, district, program or curator.
NOT_SET = "(not set)"
#: Statuses in the order of the workflow (PROJECTS.md), for the `status` grouping.
STATUS_ORDER = [
    "draft",
    "submitted",
    "in_committee",
    "supported",
    "frozen",
    "completed",
    "archived",
    "rejected",
    "withdrawn",
]
COLUMNS = [
    "key",
    "label",
    "count",
    "own_funds_amount",
    "requested_support_amount",
    "approved_support_amount",
    "jobs_count",
    "tax_revenue_amount",
]
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def _sums(raw: RawRow) -> dict[str, Any]:
    return {
        "count": raw.count,
        "own_funds_amount": raw.own_funds_amount,
        "requested_support_amount": raw.requested_support_amount,
        "approved_support_amount": raw.approved_support_amount,
        "jobs_count": raw.jobs_count,
        "tax_revenue_amount": raw.tax_revenue_amount,
    }


def _row_order(group_by: str, row: ReportRow) -> tuple[int, int, str, str]:
    if row.key is None:
        return (1, 0, "", "")
    if group_by == "status":
        rank = STATUS_ORDER.index(str(row.key)) if row.key in STATUS_ORDER else len(STATUS_ORDER)
        return (0, rank, str(row.key), "")
    return (0, 0, row.label.casefold(), f"{row.key:>20}")


class ReportService:
    def __init__(self, db: AsyncSession, organization_id: int) -> None:
        self.repo = ReportRepository(db, organization_id)

    async def report(self, group_by: str, filters: ReportFilters) -> ProjectReport:
        rows: list[ReportRow] = []
        totals = ReportSums(
            count=0,
            own_funds_amount=Decimal("0.00"),
            requested_support_amount=Decimal("0.00"),
            approved_support_amount=Decimal("0.00"),
            jobs_count=0,
            tax_revenue_amount=Decimal("0.00"),
        )
        for raw in await self.repo.fetch(group_by, filters):
            if raw.is_total:
                totals = ReportSums(**_sums(raw))
                continue
            key: str | int | None = raw.key
            if key is not None and group_by != "status":
                key = int(key)
            label = raw.label if raw.label is not None else (str(key) if key is not None else NOT_SET)
            rows.append(ReportRow(key=key, label=label, **_sums(raw)))
        rows.sort(key=lambda r: _row_order(group_by, r))
        return ProjectReport(group_by=group_by, rows=rows, totals=totals)


def _cells(row: ReportSums, key: str | int | None, label: str) -> list[Any]:
    return [
        key,
        label,
        row.count,
        row.own_funds_amount,
        row.requested_support_amount,
        row.approved_support_amount,
        row.jobs_count,
        row.tax_revenue_amount,
    ]


def _table(report: ProjectReport) -> list[list[Any]]:
    """The report as rows of cells, the totals last (key empty, label `Total`)."""
    table = [_cells(r, r.key, r.label) for r in report.rows]
    table.append(_cells(report.totals, None, "Total"))
    return table


def csv_safe(value: Any) -> str:
    """A cell as CSV text; text a spreadsheet would run as a formula is prefixed with `'`."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return money_str(value)
    text = str(value)
    if text.startswith(_FORMULA_START) and not _NUMBER.match(text):
        return "'" + text
    return text


def to_csv(report: ProjectReport) -> bytes:
    """UTF-8 with a byte order mark, so that spreadsheet programs read Cyrillic labels right."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for cells in _table(report):
        writer.writerow([csv_safe(c) for c in cells])
    return out.getvalue().encode("utf-8-sig")


def to_xlsx(report: ProjectReport) -> bytes:
    """One sheet; amounts are numbers, and text is always stored as text (never as a formula)."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(f"By {report.group_by}")
    sheet.append(COLUMNS)
    for cells in _table(report):
        row: list[Any] = []
        for value in cells:
            if isinstance(value, str):
                cell = WriteOnlyCell(sheet, value=value)
                cell.data_type = "s"  # a label such as "=SUM(A1)" stays text
                row.append(cell)
            else:
                row.append(value)
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()
