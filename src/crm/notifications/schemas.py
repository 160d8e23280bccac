from __future__ import annotations

from datetime import datetime
from typing import Any

from crm.core.schemas import ReadModel


class NotificationRead(ReadModel):
    id: int
    organization_id: int | None
    kind: str
    title: str
    body: str | None
    entity_type: str | None
    entity_id: int | None
    data: dict[str, Any]
    read_at: datetime | None
    created_at: datetime
