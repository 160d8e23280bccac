"""Custom field definitions and validation of the values records carry."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm.core.errors import Conflict, NotFound, UnprocessableEntity
from crm.custom_fields.schemas import CustomFieldCreate, CustomFieldUpdate, check_options
from crm.models import CustomField


class CustomFieldError(UnprocessableEntity):
    code = "custom_field_invalid"


def _coerce(definition: CustomField, value: Any) -> Any:
    """The stored form of a value, or ValueError."""
    t = definition.type
    if t == "text":
        if not isinstance(value, str) or len(value) > 10_000:
            raise ValueError("expected text (at most 10 000 characters)")
        return value
    if t == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError("expected a number")
        return value
    if t == "boolean":
        if not isinstance(value, bool):
            raise ValueError("expected true or false")
        return value
    if t == "date":
        if not isinstance(value, str):
            raise ValueError("expected a date YYYY-MM-DD")
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            raise ValueError("expected a date YYYY-MM-DD") from None
    if t == "select":
        if value not in definition.options:
            raise ValueError(f"expected one of {definition.options}")
        return value
    if t == "multiselect":
        if not isinstance(value, list) or any(v not in definition.options for v in value):
            raise ValueError(f"expected a list of {definition.options}")
        return list(dict.fromkeys(value))
    raise ValueError("unknown field type")  # pragma: no cover


def parse_filter_value(definition: CustomField, raw: str) -> Any:
    """A `cf.<key>=raw` query value in the type of the field (for JSONB containment)."""
    t = definition.type
    if t == "number":
        try:
            return int(raw)  # exact: a float would round integers beyond 2**53
        except ValueError:
            pass
        try:
            number = float(raw)
        except ValueError:
            raise ValueError("expected a number") from None
        if not math.isfinite(number):
            raise ValueError("expected a number")
        return int(number) if number.is_integer() else number
    if t == "boolean":
        if raw.lower() not in ("true", "false"):
            raise ValueError("expected true or false")
        return raw.lower() == "true"
    if t == "multiselect":
        return [_coerce(definition, [raw])[0]]
    return _coerce(definition, raw)


class CustomFieldService:
    def __init__(self, db: AsyncSession, organization_id: int) -> None:
        self.db = db
        self.organization_id = organization_id

    async def definitions(self, entity: str | None = None) -> Sequence[CustomField]:
        stmt = select(CustomField).where(CustomField.organization_id == self.organization_id)
        if entity is not None:
            stmt = stmt.where(CustomField.entity == entity)
        result = await self.db.execute(stmt.order_by(CustomField.created_at.desc(), CustomField.id.desc()))
        return result.scalars().all()

    async def get(self, field_id: int) -> CustomField:
        result = await self.db.execute(
            select(CustomField).where(
                CustomField.id == field_id, CustomField.organization_id == self.organization_id
            )
        )
        field = result.scalar_one_or_none()
        if field is None:
            raise NotFound("Custom field not found")
        return field

    async def create(self, data: CustomFieldCreate) -> CustomField:
        field = CustomField(organization_id=self.organization_id, **data.model_dump())
        try:
            async with self.db.begin_nested():
                self.db.add(field)
        except IntegrityError:
            raise Conflict(
                f"A {data.entity} field with key {data.key!r} exists", code="custom_field_key_taken"
            ) from None
        return field

    async def update(self, field_id: int, data: CustomFieldUpdate) -> CustomField:
        field = await self.get(field_id)
        values = data.model_dump(exclude_unset=True)
        nulls = [key for key, value in values.items() if value is None]
        if nulls:
            raise UnprocessableEntity(
                f"{nulls[0]}: may not be null",
                errors=[{"loc": ["body", key], "msg": "may not be null", "type": "missing"} for key in nulls],
            )
        if "options" in values:
            try:
                check_options(field.type, values["options"])
            except ValueError as exc:
                raise UnprocessableEntity(
                    f"options: {exc}",
                    errors=[{"loc": ["body", "options"], "msg": str(exc), "type": "value_error"}],
                ) from None
        for key, value in values.items():
            setattr(field, key, value)
        await self.db.flush()
        return field

    async def delete(self, field_id: int) -> None:
        field = await self.get(field_id)
        await self.db.delete(field)
        await self.db.flush()

    async def validate(
        self,
        entity: str,
        values: Mapping[str, Any] | None,
        *,
        existing: Mapping[str, Any] | None = None,
        partial: bool = False,
    ) -> dict[str, Any]:
        """Check record values against the definitions; returns the values to store.

        With `partial` (PATCH) the given keys are merged into `existing`; `null` removes a key."""
        definitions = {d.key: d for d in await self.definitions(entity)}
        merged: dict[str, Any] = dict(existing or {}) if partial else {}
        errors: list[dict[str, Any]] = []
        for key, value in (values or {}).items():
            definition = definitions.get(key)
            if definition is None:
                errors.append(
                    {
                        "loc": ["body", "custom_fields", key],
                        "msg": "unknown custom field",
                        "type": "custom_field_unknown",
                    }
                )
                continue
            if value is None:
                merged.pop(key, None)
                continue
            try:
                merged[key] = _coerce(definition, value)
            except ValueError as exc:
                errors.append(
                    {"loc": ["body", "custom_fields", key], "msg": str(exc), "type": "custom_field_type"}
                )
        for key, definition in definitions.items():
            if definition.required and merged.get(key) in (None, "", []):
                errors.append(
                    {
                        "loc": ["body", "custom_fields", key],
                        "msg": "this custom field is required",
                        "type": "missing",
                    }
                )
        if errors:
            raise CustomFieldError(f"custom_fields.{errors[0]['loc'][-1]}: {errors[0]['msg']}", errors=errors)
        return merged

    async def filters(self, entity: str, query: Mapping[str, str]) -> dict[str, Any]:
        """`cf.<key>=value` query parameters → a JSONB containment document."""
        wanted = {k[3:]: v for k, v in query.items() if k.startswith("cf.")}
        if not wanted:
            return {}
        definitions = {d.key: d for d in await self.definitions(entity)}
        document: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        for key, raw in wanted.items():
            definition = definitions.get(key)
            if definition is None:
                errors.append(
                    {
                        "loc": ["query", f"cf.{key}"],
                        "msg": "unknown custom field",
                        "type": "custom_field_unknown",
                    }
                )
                continue
            try:
                document[key] = parse_filter_value(definition, raw)
            except ValueError as exc:
                errors.append({"loc": ["query", f"cf.{key}"], "msg": str(exc), "type": "custom_field_type"})
        if errors:
            raise CustomFieldError(f"{errors[0]['loc'][-1]}: {errors[0]['msg']}", errors=errors)
        return document
