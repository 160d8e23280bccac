from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from crm.core.schemas import ReadModel

AlertKind = Literal["low_stock", "sync_failed"]
AlertStatus = Literal["open", "acknowledged", "resolved"]


class AlertRead(ReadModel):
    id: int
    kind: str
    key: str = Field(description="What the alert is about, e.g. `low_stock:product:42`")
    severity: str
    status: AlertStatus = Field(
        description="`resolved` once the condition cleared, else `acknowledged` once an admin acked it, "
        "else `open`"
    )
    title: str
    message: str | None
    entity_type: str | None
    entity_id: int | None
    data: dict[str, Any]
    created_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by_id: int | None
    resolved_at: datetime | None
