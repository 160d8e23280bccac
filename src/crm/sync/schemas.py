from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from crm.core.schemas import BIGINT_MAX, InputModel, ReadModel

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class SyncStart(InputModel):
    integration_id: int = Field(ge=1, le=BIGINT_MAX)
    entities: list[str] | None = Field(
        default=None, max_length=50, description="Entities to sync (default: all the provider offers)"
    )
    full: bool = Field(
        default=False, strict=True, description="Start over instead of continuing from the saved cursors"
    )


class EntityCounts(BaseModel):
    fetched: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0


class SyncError(BaseModel):
    entity: str | None = None
    external_id: str | None = None
    message: str


class SyncJobRead(ReadModel):
    id: int
    integration_id: int
    status: JobStatus
    trigger: str
    entities: list[str]
    full: bool
    counts: dict[str, EntityCounts]
    errors: list[SyncError]
    error: str | None
    cancel_requested: bool
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
