from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StrictBool

from crm.core.schemas import InputModel, ReadModel
from crm.outbox.events import valid_pattern
from crm.webhooks.signing import secret_valid


def _events(value: list[str]) -> list[str]:
    unknown = [p for p in value if not valid_pattern(p)]
    if unknown:
        raise ValueError(f"unknown event names: {', '.join(unknown)}")
    return sorted(set(value))


def _secret(value: str | None) -> str | None:
    if value is not None and not secret_valid(value):
        raise ValueError("a secret is `whsec_` followed by 24 to 64 bytes in base64")
    return value


Events = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=60)]],
    Field(min_length=1, max_length=100, examples=[["deal.*", "task.assigned"]]),
    AfterValidator(_events),
]
Url = Annotated[str, Field(min_length=1, max_length=2000, examples=["https://example.com/hooks/crm"])]
Secret = Annotated[str | None, Field(max_length=200), AfterValidator(_secret)]


class WebhookCreate(InputModel):
    url: Url
    events: Events
    secret: Secret = None
    description: Annotated[str | None, Field(max_length=300)] = None
    enabled: StrictBool = True


class WebhookUpdate(InputModel):
    url: Url | None = None
    events: Events | None = None
    secret: Secret = None
    description: Annotated[str | None, Field(max_length=300)] = None
    enabled: StrictBool | None = None


class WebhookRead(ReadModel):
    id: int
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime
    version: int


class WebhookCreated(WebhookRead):
    """The subscription with its signing secret (shown once, at creation or when it is replaced)."""

    secret: str


class DeliveryAttempt(ReadModel):
    attempt: int
    at: datetime
    response_code: int | None
    duration_ms: int | None
    error: str | None


class DeliveryRead(ReadModel):
    id: int
    webhook_id: int
    event_id: int
    event_type: str
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    response_code: int | None
    duration_ms: int | None
    error: str | None
    log: list[DeliveryAttempt]
    delivered_at: datetime | None
    created_at: datetime


class DeliveryAccepted(ReadModel):
    delivery: DeliveryRead
    payload: dict[str, Any]
