from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from crm.core.schemas import InputModel, ReadModel

EntityType = Literal[
    "contact",
    "company",
    "deal",
    "task",
    "project",
    "support",
    "decision",
    "organization",
    "pipeline",
    "custom_field",
]


class ActivityRead(ReadModel):
    id: int
    entity_type: str
    entity_id: int | None
    action: str
    actor_id: int | None
    changes: dict[str, Any]
    payload: dict[str, Any]
    created_at: datetime


class CommentCreate(InputModel):
    text: str = Field(min_length=1, max_length=10_000)
