from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import Field, StrictBool

from crm.core.schemas import InputModel, ReadModel


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


#: Every kind of notification a user can get.
NotificationKind = Literal[
    "task_assigned",
    "task_due",
    "task_overdue",
    "deal_won",
    "record_assigned",
    "project_status_changed",
    "sync_failed",
    "low_stock",
    "webhook_disabled",
]
KINDS: tuple[str, ...] = get_args(NotificationKind)


class UnreadCount(ReadModel):
    unread: int


class KindPreference(InputModel):
    in_app: StrictBool = True
    email: StrictBool = False


class PreferencesRead(ReadModel):
    language: Literal["en", "ru"]
    kinds: dict[str, KindPreference]


class PreferencesUpdate(InputModel):
    """Kinds left out keep the default (in the app, no email)."""

    language: Literal["en", "ru"] | None = None
    kinds: dict[NotificationKind, KindPreference] = Field(default_factory=dict)


class StreamTicket(ReadModel):
    ticket: str
    expires_in: int
