"""Custom field definitions and validation of the values records carry.

Record writes validate against the organization's definitions, which rarely change, so they are
cached per organization in each API process (`DefinitionCache`). A cached set is used only while
two marks still match what it was loaded under:

* the organization's generation in Redis (`cfgen:<org>`, a random token): every definition change
  replaces it after commit, before the response is sent, so every process sees the change on its
  next request. A missing token (Redis restarted, flushed) is created anew, which retires every
  cached set of that organization;
* a per-process counter bumped whenever a definition row is written in this process (at flush and
  again at commit or rollback), so the process itself never serves a set older than its own writes.

With Redis away the definitions are read from PostgreSQL on every request. Entries also expire
after `DEFINITIONS_TTL` seconds, which bounds staleness if a generation change was lost while Redis
was away.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

from sqlalchemy import event, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapper, Session, object_session

from crm.core.db import on_commit
from crm.core.errors import Conflict, NotFound, UnprocessableEntity
from crm.core.redis import RedisUnavailable, SafeRedis
from crm.custom_fields.schemas import CustomFieldCreate, CustomFieldUpdate, check_options
from crm.models import CustomField

#: Seconds a cached set of definitions is trusted at most.
DEFINITIONS_TTL = 60.0
#: Organizations whose definitions one process keeps.
DEFINITIONS_MAX_ORGS = 4096


class CustomFieldError(UnprocessableEntity):
    code = "custom_field_invalid"


class Definition(Protocol):
    """What validation needs of a definition (a `CustomField` row or a cached `FieldDefinition`)."""

    @property
    def type(self) -> str: ...
    @property
    def options(self) -> list[str]: ...
    @property
    def required(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class FieldDefinition:
    """A definition as cached: detached from any session, never changed in place."""

    key: str
    type: str
    options: list[str]
    required: bool


#: entity → key → definition, in the order of `CustomFieldService.definitions` (newest first).
Definitions = dict[str, dict[str, FieldDefinition]]


@dataclass(frozen=True, slots=True)
class _Entry:
    generation: str
    local: int
    expires: float
    definitions: Definitions


def _generation_key(organization_id: int) -> str:
    return f"cfgen:{organization_id}"


class DefinitionCache:
    """The process's cache of definitions, per organization (see the module's docstring)."""

    def __init__(self) -> None:
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._local: dict[int, int] = {}

    def touched(self, organization_id: int) -> None:
        """A definition of the organization was written in this process (flush, commit, rollback)."""
        self._local[organization_id] = self._local.get(organization_id, 0) + 1
        self._entries.pop(organization_id, None)

    def local(self, organization_id: int) -> int:
        return self._local.get(organization_id, 0)

    def get(self, organization_id: int, generation: str) -> Definitions | None:
        entry = self._entries.get(organization_id)
        if (
            entry is None
            or entry.generation != generation
            or entry.local != self.local(organization_id)
            or entry.expires <= time.monotonic()
        ):
            return None
        return entry.definitions

    def defines(self, organization_id: int, entity: str) -> bool:
        """Whether the organization's cached definitions (of any generation) have one for
        `entity`: a hint for the fast creates, which leave such bodies to the routers anyway (the
        routers read the current definitions, and refresh this entry)."""
        entry = self._entries.get(organization_id)
        return entry is not None and entry.expires > time.monotonic() and bool(entry.definitions.get(entity))

    def put(self, organization_id: int, generation: str, local: int, definitions: Definitions) -> None:
        """Keep `definitions`, loaded after `generation` and `local` were read (so a change made
        meanwhile leaves them under marks that no longer match)."""
        self._entries[organization_id] = _Entry(
            generation, local, time.monotonic() + DEFINITIONS_TTL, definitions
        )
        self._entries.move_to_end(organization_id)
        while len(self._entries) > DEFINITIONS_MAX_ORGS:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


definition_cache = DefinitionCache()


_PREFETCHED = "custom_field_generation"


def generation_key(organization_id: int) -> str:
    """The Redis key of the organization's definition generation (read ahead with other keys)."""
    return _generation_key(organization_id)


def prefetched_generation(db: AsyncSession, organization_id: int, value: str | None) -> None:
    """Keep a generation read in another round trip of this request (the tenant's access `MGET`)
    for the request's first definition lookup; a missing key is left to `current_generation`."""
    if value is not None:
        db.info.setdefault(_PREFETCHED, {})[organization_id] = value


async def current_generation(redis: SafeRedis, organization_id: int) -> str:
    """The organization's definition generation; created when missing (one round trip either way).
    RedisUnavailable when Redis is away."""
    token = secrets.token_hex(8)
    key = _generation_key(organization_id)
    previous = await redis.run(lambda r: r.set(key, token, nx=True, get=True))
    return str(previous) if previous is not None else token


def definitions_changed_after_commit(db: AsyncSession, redis: SafeRedis | None, organization_id: int) -> None:
    """Give the organization a new definition generation once this transaction commits, which
    retires the definitions every API process has cached for it."""
    if redis is None:
        return
    pending: set[int] = db.info.setdefault("custom_field_generations", set())
    if organization_id in pending:
        return
    pending.add(organization_id)

    async def bump() -> None:
        db.info.get("custom_field_generations", set()).discard(organization_id)
        # When Redis is away the change is seen by other processes within DEFINITIONS_TTL.
        with contextlib.suppress(RedisUnavailable):
            token = secrets.token_hex(8)
            await redis.run(lambda r: r.set(_generation_key(organization_id), token))

    on_commit(db, bump)


_TOUCHED = "custom_field_orgs"


def _definition_written(mapper: Mapper[Any], connection: Connection, target: CustomField) -> None:
    definition_cache.touched(target.organization_id)
    session = object_session(target)
    if session is not None:
        session.info.setdefault(_TOUCHED, set()).add(target.organization_id)


for _name in ("after_insert", "after_update", "after_delete"):
    event.listen(CustomField, _name, _definition_written)


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _definitions_settled(session: Session) -> None:
    # A set loaded between the flush and the commit (or rollback) was read under the flushed mark.
    for organization_id in session.info.pop(_TOUCHED, ()):
        definition_cache.touched(organization_id)


def _coerce(definition: Definition, value: Any) -> Any:
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


def parse_filter_value(definition: Definition, raw: str) -> Any:
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
    """`redis` (optional) turns on the definition cache for validation and filters; the writes then
    also retire the other processes' cached definitions."""

    def __init__(self, db: AsyncSession, organization_id: int, redis: SafeRedis | None = None) -> None:
        self.db = db
        self.organization_id = organization_id
        self.redis = redis

    async def definitions(self, entity: str | None = None) -> Sequence[CustomField]:
        stmt = select(CustomField).where(CustomField.organization_id == self.organization_id)
        if entity is not None:
            stmt = stmt.where(CustomField.entity == entity)
        result = await self.db.execute(stmt.order_by(CustomField.created_at.desc(), CustomField.id.desc()))
        return result.scalars().all()

    async def _load(self) -> Definitions:
        columns = (
            CustomField.entity,
            CustomField.key,
            CustomField.type,
            CustomField.options,
            CustomField.required,
        )
        result = await self.db.execute(
            select(*columns)
            .where(CustomField.organization_id == self.organization_id)
            .order_by(CustomField.created_at.desc(), CustomField.id.desc())
        )
        loaded: Definitions = {}
        for entity, key, type_, options, required in result:
            loaded.setdefault(entity, {})[key] = FieldDefinition(key, type_, list(options or []), required)
        return loaded

    async def by_key(self, entity: str) -> Mapping[str, Definition]:
        """The entity's definitions by key, from the process's cache when it is current."""
        if self.redis is None:
            return {d.key: d for d in await self.definitions(entity)}
        try:
            # Used once: a later lookup in this request may follow a definition change it made.
            generation = self.db.info.get(_PREFETCHED, {}).pop(self.organization_id, None)
            if generation is None:
                generation = await current_generation(self.redis, self.organization_id)
        except RedisUnavailable:
            return (await self._load()).get(entity, {})
        cached = definition_cache.get(self.organization_id, generation)
        if cached is None:
            local = definition_cache.local(self.organization_id)
            cached = await self._load()
            definition_cache.put(self.organization_id, generation, local, cached)
        return cached.get(entity, {})

    def _changed(self) -> None:
        definitions_changed_after_commit(self.db, self.redis, self.organization_id)

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
        self._changed()
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
        self._changed()
        return field

    async def delete(self, field_id: int) -> None:
        field = await self.get(field_id)
        await self.db.delete(field)
        await self.db.flush()
        self._changed()

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
        definitions = await self.by_key(entity)
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
        definitions = await self.by_key(entity)
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
