from __future__ import annotations

from datetime import UTC, datetime

from pydantic import ConfigDict, Field, field_validator

from crm.core.schemas import InputModel, ReadModel
from crm.organizations.permissions import API_KEY_SCOPES


class ApiKeyCreate(InputModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"name": "Reporting script", "scopes": ["contacts:read", "deals:read"]}]
        }
    )

    name: str = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(
        min_length=1, max_length=100, description="Permission strings (§5) plus `users:read`"
    )
    expires_at: datetime | None = Field(default=None, description="Optional; in the future, with a zone")

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, scopes: list[str]) -> list[str]:
        unknown = sorted(set(scopes) - API_KEY_SCOPES)
        if unknown:
            raise ValueError(f"unknown scopes: {', '.join(s[:64] for s in unknown)}")
        return sorted(set(scopes))

    @field_validator("expires_at")
    @classmethod
    def _aware_and_future(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("expires_at needs a time zone (e.g. a trailing Z)")
        if value <= datetime.now(UTC):
            raise ValueError("expires_at must be in the future")
        return value


class ApiKeyRead(ReadModel):
    id: int
    name: str
    scopes: list[str]
    prefix: str
    created_by_id: int | None = Field(
        description="The member the key acts for: it may do at most what this member still may"
    )
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The secret. Shown only in this response; store it now.")
