"""Shared schema pieces: base models, the list envelope, common field types."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from email_validator import EmailNotValidError, validate_email
from fastapi import Path, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

T = TypeVar("T")


class InputModel(BaseModel):
    """Request bodies: unknown fields are refused (422) so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ReadModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class PageParams(BaseModel):
    limit: int = 50
    offset: int = 0


def page_params(
    limit: Annotated[int, Query(ge=1, le=200, description="Page size, 1..200")] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="Rows to skip")] = 0,
) -> PageParams:
    return PageParams(limit=limit, offset=offset)


_SPECIAL_USE_ERROR = "special-use or reserved name"


def normalize_email(value: str, *, allow_special_use: bool = False) -> str:
    """Validate syntax (no DNS) and return the address in lower case."""
    try:
        return validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        if allow_special_use and _SPECIAL_USE_ERROR in str(exc) and "@" in value:
            local, _, domain = value.rpartition("@")
            # Check the local part on a neutral domain, then keep the special-use domain as given.
            validate_email(f"{local}@example.com", check_deliverability=False)
            if domain.strip() and all(part for part in domain.split(".")):
                return f"{local}@{domain}".lower()
        raise ValueError(str(exc)) from None


_EMAIL_SCHEMA = WithJsonSchema({"type": "string", "format": "email", "maxLength": 320})

Email = Annotated[
    str, Field(max_length=320), AfterValidator(normalize_email), _EMAIL_SCHEMA
]
LenientEmail = Annotated[
    str,
    Field(max_length=320),
    AfterValidator(lambda v: normalize_email(v, allow_special_use=True)),
    _EMAIL_SCHEMA,
]


def iso_z(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


def model_dump_changes(model: BaseModel) -> dict[str, Any]:
    """Only the fields the client actually sent (PATCH semantics)."""
    return model.model_dump(exclude_unset=True)


BIGINT_MAX = 9_223_372_036_854_775_807
#: A row id in a path: positive and within PostgreSQL's bigint (larger ones are 422, not 500).
Id = Annotated[int, Path(ge=1, le=BIGINT_MAX)]


def sort_param(*fields: str) -> Any:
    """A `sort` query parameter accepting `field` or `-field` for the allowed fields (else 422)."""
    values = tuple(v for f in fields for v in (f, f"-{f}"))
    return Annotated[
        Literal[values] | None,  # type: ignore[valid-type]
        Query(description=f"One of {', '.join(fields)}; prefix with `-` for descending. Default: newest first."),
    ]
