from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from crm.core.schemas import ReadModel

ImportEntity = Literal["contacts", "companies", "deals", "projects"]
OnConflict = Literal["skip", "update"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class RowError(ReadModel):
    """A rejected row: its number as the spreadsheet shows it (header = row 1), the column, why, and
    when a record rule refused it, the code the API answers the same write with."""

    row: int | None = None
    column: str | None = None
    message: str
    code: str | None = Field(
        default=None,
        exclude_if=lambda code: code is None,
        description="Present when a record rule refused the row (e.g. `deal_amount_zero`)",
    )


class ImportJobRead(ReadModel):
    id: int
    status: JobStatus
    entity: ImportEntity
    file_name: str | None
    file_format: Literal["csv", "xlsx"]
    mapping: dict[str, Any]
    dry_run: bool
    on_conflict: OnConflict
    atomic: bool
    total_rows: int
    processed_rows: int
    created: int
    updated: int
    skipped: int
    failed: int
    errors: list[RowError]
    error: str | None
    user_id: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
