from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from crm.core.schemas import InputModel

#: Bounds of `sync_interval_minutes`: once a minute to once a day.
MIN_INTERVAL, MAX_INTERVAL = 1, 1440

Credentials = dict[str, Any]
ProviderSettings = dict[str, Any]


class IntegrationCreate(InputModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"provider": "moysklad", "name": "MoySklad", "credentials": {"token": "your-api-token"}}
            ]
        }
    )

    provider: str = Field(min_length=1, max_length=50, description="A registered provider, e.g. `moysklad`")
    name: str = Field(min_length=1, max_length=200)
    base_url: str | None = Field(
        default=None, max_length=500, description="The provider's API root; default: the provider's own"
    )
    credentials: Credentials = Field(
        default_factory=dict, description="Write-only; validated against the provider's credentials schema"
    )
    settings: ProviderSettings = Field(default_factory=dict, description="Provider options")
    enabled: bool = Field(default=True, strict=True)
    sync_interval_minutes: int | None = Field(
        default=None,
        ge=MIN_INTERVAL,
        le=MAX_INTERVAL,
        strict=True,
        description="Minutes between scheduled syncs; default `MOYSKLAD_SYNC_INTERVAL_MINUTES`",
    )


class IntegrationUpdate(InputModel):
    """Fields to change. `credentials` replaces the stored ones; a value `"***"` keeps the stored
    value of that key, so a form may send back what it was shown. `base_url: null` restores the
    provider's default."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    base_url: str | None = Field(default=None, max_length=500)
    credentials: Credentials | None = None
    settings: ProviderSettings | None = None
    enabled: bool | None = Field(default=None, strict=True)
    sync_interval_minutes: int | None = Field(default=None, ge=MIN_INTERVAL, le=MAX_INTERVAL, strict=True)


class IntegrationTest(InputModel):
    """An unsaved configuration to try: the create body (`name`, `enabled` and
    `sync_interval_minutes` may be sent and are not used). Its example is the generic one: a real
    provider would be called."""

    provider: str = Field(min_length=1, max_length=50)
    base_url: str | None = Field(default=None, max_length=500)
    credentials: Credentials = Field(default_factory=dict)
    settings: ProviderSettings = Field(default_factory=dict)
    name: str | None = Field(default=None, max_length=200)
    enabled: bool | None = Field(default=None, strict=True)
    sync_interval_minutes: int | None = Field(default=None, ge=MIN_INTERVAL, le=MAX_INTERVAL, strict=True)


class IntegrationRead(BaseModel):
    id: int
    provider: str
    name: str
    base_url: str | None
    credentials: dict[str, str] = Field(description='Every value shown as `"***"`')
    settings: ProviderSettings
    enabled: bool
    sync_interval_minutes: int
    next_sync_at: datetime | None
    last_sync_at: datetime | None
    last_sync_status: str | None
    webhook_url: str = Field(description="Register this URL at the provider for change notifications")
    version: int
    created_at: datetime
    updated_at: datetime


class ProviderInfo(BaseModel):
    """An installed provider (built in, or a plugin's through the `crm.integrations` entry points)
    and what an integration of it takes."""

    name: str = Field(description="What `provider` of an integration names")
    title: str
    entities: list[str] = Field(description="What it syncs, in its order")
    default_base_url: str | None
    credentials_schema: dict[str, Any] = Field(description="JSON Schema of `credentials`")
    settings_schema: dict[str, Any] = Field(description="JSON Schema of `settings`")


class ConnectionTestResult(BaseModel):
    ok: bool
    detail: str


class WebhookAccepted(BaseModel):
    """`queued`: a targeted sync was queued; false when nothing applies or a job already runs
    (`job_id` names it)."""

    queued: bool
    job_id: int | None = None
    entities: list[str] = Field(default_factory=list)
    duplicate: bool = Field(default=False, description="This event was received before; nothing queued")


class AdminUserRead(BaseModel):
    id: int
    email: str
    full_name: str
    is_active: bool
    is_superuser: bool
    last_login_at: datetime | None
    created_at: datetime


class AdminUserUpdate(InputModel):
    is_active: bool | None = Field(default=None, strict=True)
    is_superuser: bool | None = Field(default=None, strict=True)


class WorkerSeen(BaseModel):
    name: str
    last_seen: datetime


class IntegrationHealth(BaseModel):
    id: int
    name: str
    provider: str
    enabled: bool
    last_sync_at: datetime | None
    last_sync_status: str | None
    running_job_id: int | None


ComponentState = Literal["ok", "down"]


class SystemHealth(BaseModel):
    database: ComponentState
    redis: ComponentState
    broker: ComponentState
    workers: list[WorkerSeen]
    integrations: list[IntegrationHealth]
