"""Application settings, read from the environment and `.env`."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET_KEY = "dev-only-secret-key-change-me-in-production-0123456789"
DEV_ENCRYPTION_KEY = "ZGV2LW9ubHktZW5jcnlwdGlvbi1rZXktMzJieXRlcyE="  # base64 of 32 bytes, dev only

_RATE = re.compile(r"^(off|\d+/(second|minute|hour))$")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/crm"
    database_pool_size: int = 10
    database_max_overflow: int = 10
    database_connect_timeout: float = 5.0
    #: The URL points at PgBouncer in transaction pooling mode: no client-side statement cache, and
    #: prepared statements get unique names (a server connection serves many clients in turn).
    database_pgbouncer: bool = False
    #: A direct PostgreSQL URL (not through PgBouncer) for the processes that hold session state:
    #: Celery workers (a job's advisory lock lives as long as its run). Empty: `DATABASE_URL`.
    database_direct_url: str | None = None
    #: Connections of the fast read path (`crm.records.fast_read`); 0 turns that path off.
    hot_read_pool_size: int = 16
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_timeout: float = 0.5
    celery_broker_url: str = "redis://127.0.0.1:6379/1"
    #: Port of a Celery worker's own Prometheus endpoint (its pool processes add up); 0: none.
    worker_metrics_port: int = 0
    host: str = "127.0.0.1"
    port: int = 8000

    secret_key: str = Field(
        default=DEV_SECRET_KEY, validation_alias=AliasChoices("JWT_SECRET_KEY", "SECRET_KEY", "secret_key")
    )
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    jwt_issuer: str = "crm"
    jwt_audience: str = "crm-api"
    encryption_key: str = DEV_ENCRYPTION_KEY
    access_token_expire_minutes: int = 15
    refresh_token_expire_days: int = 7
    #: A spent refresh token presented again within this many seconds (a second tab) still works.
    refresh_reuse_grace_seconds: float = Field(default=10, ge=0, le=300)

    create_admin_on_startup: bool = False
    admin_email: str | None = None
    admin_password: str | None = None
    admin_name: str = "Administrator"
    admin_organization: str | None = None
    registration_organization: str | None = None

    rate_limit_login_per_account: str = "10/minute"
    rate_limit_login_per_ip: str = "30/minute"
    rate_limit_register_per_ip: str = "10/minute"
    rate_limit_public_register_per_ip: str = "20/minute"
    rate_limit_refresh_per_ip: str = "60/minute"
    trusted_proxies: str = ""

    cache_ttl_seconds: int = 300
    moysklad_sync_interval_minutes: int = 15
    cors_origins: str = "http://localhost:3000"
    allow_private_integration_urls: bool | None = None
    smtp_url: str | None = None
    #: Seconds between a failed webhook delivery and its next attempts (8 attempts over about a day).
    webhook_retry_delays: str = "10,60,300,1800,7200,21600,54000"
    webhook_timeout_seconds: float = 5.0
    #: Worker processes that send webhook deliveries (subscriptions shared out by id; one is the
    #: relay's own): each tops out at about a core. `crm worker` runs one pool process more.
    webhook_sender_processes: int = Field(default=1, ge=1, le=64)
    notification_stream_heartbeat_seconds: float = 15.0
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    max_body_bytes: int = 1024 * 1024
    max_import_bytes: int = 50 * 1024 * 1024
    #: An uploaded workbook may unzip to at most this many MiB (SPEC §20.6).
    import_max_unzipped_mb: int = Field(default=200, ge=1)

    @field_validator("database_url", "database_direct_url")
    @classmethod
    def _asyncpg_driver(cls, value: str | None) -> str | None:
        if not value:
            return value or None
        for prefix in ("postgresql://", "postgres://"):
            if value.startswith(prefix):
                return "postgresql+asyncpg://" + value[len(prefix) :]
        return value

    @field_validator(
        "rate_limit_login_per_account",
        "rate_limit_login_per_ip",
        "rate_limit_register_per_ip",
        "rate_limit_public_register_per_ip",
        "rate_limit_refresh_per_ip",
    )
    @classmethod
    def _rate_format(cls, value: str) -> str:
        if not _RATE.match(value.strip()):
            raise ValueError("rate limits are written N/second, N/minute, N/hour or off")
        return value.strip()

    @model_validator(mode="after")
    def _production_guards(self) -> Settings:
        if len(self.secret_key.encode()) < 32:
            raise ValueError("JWT_SECRET_KEY must be at least 32 bytes")
        if self.allow_private_integration_urls is None:
            self.allow_private_integration_urls = self.environment != "production"
        if self.environment == "production":
            if self.secret_key == DEV_SECRET_KEY:
                raise ValueError("JWT_SECRET_KEY must be set in production")
            if self.encryption_key == DEV_ENCRYPTION_KEY:
                raise ValueError("ENCRYPTION_KEY must be set in production")
            if "*" in self.cors_origin_list:
                raise ValueError("CORS_ORIGINS may not be * in production")
        return self

    @property
    def webhook_retry_delay_list(self) -> list[float]:
        return [float(v) for v in self.webhook_retry_delays.split(",") if v.strip()]

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def import_max_unzipped_bytes(self) -> int:
        return self.import_max_unzipped_mb * 1024 * 1024

    @property
    def trusted_proxy_list(self) -> list[str]:
        return [p.strip() for p in self.trusted_proxies.split(",") if p.strip()]

    @property
    def worker_database_url(self) -> str:
        """Where workers connect: the direct URL when one is set, else `DATABASE_URL`."""
        return self.database_direct_url or self.database_url

    @property
    def sync_database_url(self) -> str:
        return self.database_url.replace("+asyncpg", "")


@lru_cache
def get_settings() -> Settings:
    return Settings()
