"""Exports: an entity's filtered list written as CSV or XLSX, streamed in chunks from a server-side
cursor so that memory stays flat however many rows there are (docs/exports.md)."""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Final, Literal

from anyio import to_thread
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from sqlalchemy.ext.asyncio import AsyncSession

from crm.core.schemas import iso_z
from crm.custom_fields.service import CustomFieldService
from crm.exports.cells import ESCAPE, escape_cell, needs_escape
from crm.exports.repository import Column, ExportQuery, ExportRepository
from crm.organizations.dependencies import Tenant

Entity = Literal["contacts", "companies", "deals", "projects"]
Format = Literal["csv", "xlsx"]

#: Rows fetched from the cursor (and written) at a time.
CHUNK_ROWS: Final = 1000
#: The finished XLSX stays in memory up to this size, then spills to a temporary file.
SPOOL_BYTES: Final = 8 * 1024 * 1024
READ_BYTES: Final = 64 * 1024
#: Excel keeps 15 significant digits; money with more is written as text so that nothing is rounded.
EXCEL_DIGITS: Final = 15
UTF8_BOM: Final = "\ufeff"
MEDIA_TYPES: Final[dict[str, str]] = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
#: The `entity` of each exportable record's custom field definitions.
CUSTOM_FIELD_ENTITY: Final[dict[str, str]] = {
    "contacts": "contact",
    "companies": "company",
    "deals": "deal",
    "projects": "project",
}

#: A cell before it is written: text, a whole number, money, a custom field number, a date, or empty.
Value = str | int | float | Decimal | date | None


@dataclass(frozen=True, slots=True)
class CustomColumn:
    key: str

    @property
    def header(self) -> str:
        return f"cf.{self.key}"


#: Columns written after the custom fields.
TRAILING: Final = ("created_at", "updated_at")


@dataclass(frozen=True, slots=True)
class ExportPlan:
    """What an export writes: the query feeding the rows and the custom field columns, which come
    after the record's own fields and before its timestamps."""

    entity: Entity
    format: Format
    query: ExportQuery
    custom: list[CustomColumn]

    @property
    def split(self) -> int:
        """Where the custom field columns go among the fixed ones."""
        return sum(1 for c in self.query.columns if c.header not in TRAILING)

    @property
    def headers(self) -> list[str]:
        fixed = [c.header for c in self.query.columns]
        return fixed[: self.split] + [c.header for c in self.custom] + fixed[self.split :]

    @property
    def filename(self) -> str:
        return f"{self.entity}-{datetime.now(UTC).date().isoformat()}.{self.format}"

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]

    def converter(self) -> Callable[[Sequence[Any]], list[Value]]:
        """A function turning one result row into its cells, in header order."""
        columns = self.query.columns
        split = self.split
        n = len(columns)

        def convert(row: Sequence[Any]) -> list[Value]:
            fixed = [_value(c, row[i]) for i, c in enumerate(columns)]
            document: dict[str, Any] = row[n] or {}
            custom = [_custom_value(document.get(c.key)) for c in self.custom]
            return fixed[:split] + custom + fixed[split:]

        return convert


def _value(column: Column, value: Any) -> Value:
    if value is None:
        return None
    if column.kind == "tags":
        return ",".join(value) if value else None
    if column.kind == "timestamp":
        return iso_z(value)
    if column.kind == "date":
        return value if isinstance(value, date) else str(value)
    if column.kind in ("int", "money"):
        return value  # type: ignore[no-any-return]
    return str(value)


def _custom_value(value: Any) -> Value:
    """A custom field value in the import's cell conventions (lists comma-separated, booleans
    `true`/`false`, dates ISO)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, list):
        return ",".join(str(v) for v in value) if value else None
    return str(value)


class ExportService:
    def __init__(self, db: AsyncSession, tenant: Tenant) -> None:
        self.db = db
        self.tenant = tenant

    async def plan(self, entity: Entity, fmt: Format, filters: Any, sort: str | None) -> ExportPlan:
        """The headers and query of an export (custom field columns from the definitions)."""
        definitions = await CustomFieldService(self.db, self.tenant.organization_id).definitions(
            CUSTOM_FIELD_ENTITY[entity]
        )
        custom = [CustomColumn(d.key) for d in reversed(definitions)]  # in creation order
        builder: Callable[[Any, str | None], ExportQuery] = getattr(
            ExportRepository(self.db, self.tenant.organization_id), entity
        )
        return ExportPlan(entity, fmt, builder(filters, sort), custom)


async def _batches(db: AsyncSession, plan: ExportPlan) -> AsyncIterator[list[list[Value]]]:
    """The rows of the export, `CHUNK_ROWS` at a time, from a server-side cursor."""
    convert = plan.converter()
    result = await db.stream(plan.query.statement.execution_options(yield_per=CHUNK_ROWS))
    async for partition in result.partitions():
        yield [convert(row) for row in partition]


Batches = AsyncIterator[list[list[Value]]]


async def stream(db: AsyncSession, plan: ExportPlan) -> AsyncIterator[bytes]:
    """The file's bytes in chunks. `db` must stay open while the response is sent.

    The query runs and its first chunk is read here, before the caller answers: a query that fails
    (PostgreSQL away, text it refuses) is then an error response, not a 200 broken off mid-file."""
    batches = _batches(db, plan)
    first = await anext(batches, None)

    async def rows() -> Batches:
        if first is not None:
            yield first
            async for batch in batches:
                yield batch

    if plan.format == "xlsx":
        return _xlsx(rows(), plan)
    return _csv(rows(), plan)


def csv_cell(value: Value) -> str:
    """A CSV field: text escaped against formulas, numbers as they are, empty for null."""
    if value is None:
        return ""
    if isinstance(value, str):
        return escape_cell(value)
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, date):
        return value.isoformat()
    return repr(value) if isinstance(value, float) else str(value)


async def _csv(batches: Batches, plan: ExportPlan) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    buffer.write(UTF8_BOM)
    writer.writerow([csv_cell(h) for h in plan.headers])
    yield buffer.getvalue().encode("utf-8")
    async for batch in batches:
        buffer.seek(0)
        buffer.truncate()
        writer.writerows([csv_cell(v) for v in row] for row in batch)
        yield buffer.getvalue().encode("utf-8")


def xlsx_text(text: str) -> str:
    """Text for an XLSX string cell: characters XML cannot hold dropped; an apostrophe that
    `unescape_cell` would strip doubled (string cells are never formulas, so nothing else is
    escaped)."""
    text = ILLEGAL_CHARACTERS_RE.sub("", text)
    return ESCAPE + text if text.startswith(ESCAPE) and needs_escape(text) else text


def _xlsx_cell(sheet: Any, value: Value) -> Any:
    if isinstance(value, str):
        text = xlsx_text(value)
        if text.startswith("="):
            cell = WriteOnlyCell(sheet, value=text)
            cell.data_type = "s"  # text, not a formula
            return cell
        return text
    if isinstance(value, Decimal):
        if len(value.as_tuple().digits) > EXCEL_DIGITS:
            return f"{value:f}"
        cell = WriteOnlyCell(sheet, value=value)
        cell.number_format = "0.00"
        return cell
    if isinstance(value, date):
        cell = WriteOnlyCell(sheet, value=value)
        cell.number_format = "yyyy-mm-dd"
        return cell
    return value


def _append(sheet: Any, rows: list[list[Value]]) -> None:
    for row in rows:
        sheet.append([_xlsx_cell(sheet, v) for v in row])


async def _xlsx(batches: Batches, plan: ExportPlan) -> AsyncIterator[bytes]:
    # Write-only workbooks keep rows in a temporary file, not in memory; openpyxl is synchronous, so
    # every step runs in a worker thread and the event loop stays free.
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title=plan.entity)
    sheet.freeze_panes = "A2"
    sheet.append([xlsx_text(h) for h in plan.headers])
    async for batch in batches:
        await to_thread.run_sync(_append, sheet, batch)
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        await to_thread.run_sync(workbook.save, spool)
        spool.seek(0)
        while chunk := await to_thread.run_sync(spool.read, READ_BYTES):
            yield chunk
