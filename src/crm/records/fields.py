"""Field rules shared by the CRM records: phones, custom fields, PATCH bodies."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from crm.core.errors import UnprocessableEntity
from crm.core.redis import SafeRedis
from crm.core.validators import normalize_phone
from crm.custom_fields.service import CustomFieldService


def invalid_field(field: str, message: str, error_type: str = "value_error") -> UnprocessableEntity:
    """A 422 shaped like a request validation error, for rules checked in a service."""
    return UnprocessableEntity(
        f"{field}: {message}", errors=[{"loc": ["body", field], "msg": message, "type": error_type}]
    )


def check_range(
    start: datetime | date | None,
    end: datetime | date | None,
    names: tuple[str, str] = ("created_from", "created_to"),
) -> None:
    """422 when a list's range starts after it ends (`created_from` later than `created_to`); every list
    with a date or time range checks it here, so they all answer the same."""
    if start is not None and end is not None and start > end:
        first, last = names
        error = {"loc": ["query", first], "msg": f"later than {last}", "type": "value_error"}
        raise UnprocessableEntity(f"{first} is later than {last}", errors=[error])


#: Where records come from besides an integration's provider (whose name a synced row carries).
OWN_SOURCES = ("manual", "registration", "import")


def check_source(source: str | None) -> None:
    """422 for a `source` filter naming no origin of records: ours or an installed provider's (a
    plugin's too, such as `kaspi`)."""
    if source is None or source in OWN_SOURCES:
        return
    from crm.integrations.registry import provider_names

    names = provider_names()
    if source in names:
        return
    known = ", ".join((*OWN_SOURCES, *names))
    error = {"loc": ["query", "source"], "msg": f"unknown source; known: {known}", "type": "value_error"}
    raise UnprocessableEntity(f"Unknown source: {source}", errors=[error])


def e164(raw: str | None, field: str = "phone") -> str | None:
    """The E.164 form of a phone (`+79213451948`, default region RU); None when blank.
    422 when `phonenumbers` does not deem it a possible number (SPEC §19.13)."""
    if raw is None or not raw.strip():
        return None
    try:
        return normalize_phone(raw)
    except ValueError as exc:
        raise invalid_field(field, str(exc)) from None


def phone_fields(raw: str | None) -> dict[str, str | None]:
    """`phone` in E.164 and `phone_raw` as typed (both None when blank)."""
    phone = e164(raw)
    return {"phone": phone, "phone_raw": raw if phone is not None else None}


def patch_values(
    data: BaseModel, *, required: Iterable[str] = (), lists: Iterable[str] = ("tags",)
) -> dict[str, Any]:
    """The fields a PATCH sent. A required field may not be set to null (422); a list sent as null
    becomes empty."""
    values = data.model_dump(exclude_unset=True)
    for field in required:
        if field in values and values[field] is None:
            raise invalid_field(field, "may not be null", "missing")
    for field in lists:
        if field in values and values[field] is None:
            values[field] = []
    return values


async def check_custom_fields(
    db: AsyncSession,
    organization_id: int,
    entity: str,
    values: dict[str, Any],
    existing: Mapping[str, Any] | None,
    *,
    partial: bool,
    redis: SafeRedis | None = None,
) -> None:
    """Validate `values["custom_fields"]` against the definitions, in place (422 on an unknown key,
    a wrong type or a missing required field).

    Create and PUT validate the whole document (absent → `{}`); a PATCH merges the sent keys into
    `existing` (a key sent as null is removed) and leaves the stored document alone when it sends none.
    With `redis` the definitions come from the process's cache (`crm.custom_fields.service`)."""
    service = CustomFieldService(db, organization_id, redis)
    sent = values.get("custom_fields")
    if partial and existing is not None and sent is None:
        values.pop("custom_fields", None)
        return
    values["custom_fields"] = await service.validate(
        entity, sent or {}, existing=existing if partial else None, partial=partial
    )
