from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from crm.core.schemas import normalize_email

RegistrationEmail = Annotated[
    str,
    Field(max_length=100),
    AfterValidator(lambda v: normalize_email(v, allow_special_use=True)),
    WithJsonSchema({"type": "string", "format": "email", "maxLength": 100}),
]


class RegistrationRequest(BaseModel):
    """A shop customer's sign-up. Fields this endpoint does not know are ignored (compatibility)."""

    model_config = ConfigDict(
        extra="ignore",
        str_strip_whitespace=True,
        json_schema_extra={
            "example": {
                "name": "Ivan Ivanov",
                "email": "ivan.ivanov@example.ru",
                "age": 33,
                "gender": "Male",
                "country": "Russia",
                "address": "Russia, Orsk, Molodezhnaya St., 18 apartment 6",
                "phone": "+7(921)345-19-48",
            }
        },
    )

    name: str = Field(min_length=1, max_length=100)
    email: RegistrationEmail
    age: int | None = Field(default=None, ge=0, le=150)
    gender: str | None = Field(default=None, max_length=10)
    country: str | None = Field(default=None, max_length=100)
    address: str | None = Field(default=None, max_length=255)
    phone: str | None = Field(default=None, max_length=25, description="Kept as typed")

    @field_validator("gender", "country", "address", "phone")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None


class RegistrationRead(BaseModel):
    id: int
    name: str
    email: str
    age: int | None
    gender: str | None
    country: str | None
    address: str | None
    phone: str | None = Field(description="As the customer typed it")
    registered_at: datetime
