"""What every entity's import shares: a row, the job's outcome, and the bulk writing of a chunk.

A chunk is written with a handful of statements whatever its size: one SELECT of the rows already
stored under the chunk's natural keys (no lock), the insert of new rows — ON CONFLICT DO NOTHING on the
partial unique index of the key; contacts go through a binary COPY into a temporary table, the other
entities through a multi-row INSERT — one SELECT … FOR UPDATE of the rows about to change, one
executemany UPDATE by primary key per set of changed columns, plus bulk lookups of references
(companies by INN, contacts by email, dictionaries by name).

An entity's module declares only what is its own, taken from the entity itself where it is declared
once: the columns compared (the service's `CREATED_FIELDS`), the cell limits and choices (its API
schemas, through `text_of`, `integer_of`, `choice_of`), the status rules (its state machine).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, TypeAlias, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from sqlalchemy import String, Table, bindparam, func, select, text, true, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.sqltypes import NullType

from crm.core.errors import AppError
from crm.imports import cells
from crm.imports.fields import CUSTOM_FIELD_PREFIX, EntityFields
from crm.models import CustomField, Membership, User
from crm.models.company import UNIQUE_SOURCES
from crm.records.states import Broken

Parser = Callable[[str], Any]
#: Sources whose rows the natural keys' partial unique indexes cover (`models/company.py`).
UNIQUE_SOURCE_LIST = ("manual", "registration", "import")


@dataclass
class Row:
    """One validated row: field values of the mapped columns, custom field values, natural key."""

    number: int
    values: dict[str, Any]
    custom: dict[str, Any]
    key: Any = None
    #: Model column values, filled when references are resolved.
    record: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    """Counts and per-row errors of one job."""

    created: int = 0
    updated: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    #: Records created per activity entity type (projects create their clients too).
    created_by_type: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    updated_by_type: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    failed_rows: set[int] = field(default_factory=set)
    max_errors: int = 1000

    def error(self, row: int, column: str | None, message: str, code: str | None = None) -> None:
        if row not in self.failed_rows:
            self.failed_rows.add(row)
            self.failed += 1
        if len(self.errors) < self.max_errors:
            entry: dict[str, Any] = {"row": row, "column": column, "message": message}
            if code is not None:
                entry["code"] = code
            self.errors.append(entry)


@dataclass
class Context:
    organization_id: int
    user_id: int | None
    on_conflict: str
    #: field → the header of its column in the file (for error messages).
    headers: dict[str, str]
    outcome: Outcome


Change: TypeAlias = tuple[Row, dict[str, Any], dict[str, Any]]
"""A row to update: the row, the stored columns, the changed columns."""


def table_of(model: Any) -> Table:
    """The Core table of a model (Core statements skip the ORM's per-row bookkeeping)."""
    table: Table = model.__table__
    return table


def utc_now() -> datetime:
    return datetime.now(UTC)


# Cell parsers from the entity's own schemas --------------------------------------------------------


def _constraints(schema: type[BaseModel], name: str) -> list[Any]:
    """The constraints of a schema field, its own and those of an `Annotated` type it wraps."""
    info = schema.model_fields[name]
    found = list(info.metadata)
    for arg in get_args(info.annotation):
        for meta in getattr(arg, "__metadata__", ()):
            found += getattr(meta, "metadata", [meta])
    return found


def _bound(schema: type[BaseModel], name: str, kind: type[Any]) -> Any:
    for meta in _constraints(schema, name):
        if isinstance(meta, kind):
            return meta
    raise LookupError(f"{schema.__name__}.{name} has no {kind.__name__}")


def text_of(schema: type[BaseModel], name: str) -> Parser:
    """Text as long as the schema's field allows."""
    limit: int = _bound(schema, name, annotated_types.MaxLen).max_length
    return lambda v: cells.text(v, limit)


def integer_of(schema: type[BaseModel], name: str) -> Parser:
    """A whole number in the schema field's bounds."""
    low: int = _bound(schema, name, annotated_types.Ge).ge
    high: int = _bound(schema, name, annotated_types.Le).le
    return lambda v: cells.integer(v, low, high)


def choice_of(schema: type[BaseModel], name: str) -> Parser:
    """One of the values of the schema field's `Literal`."""
    allowed: tuple[str, ...] = ()
    for arg in (schema.model_fields[name].annotation, *get_args(schema.model_fields[name].annotation)):
        if get_origin(arg) is Literal:
            allowed = get_args(arg)
    if not allowed:
        raise LookupError(f"{schema.__name__}.{name} is not a choice")
    return lambda v: cells.choice(v, allowed)


def compared_of(created_fields: Iterable[str], *, besides: Iterable[str] = ()) -> tuple[str, ...]:
    """The columns an import compares: the fields the entity's service creates, less custom fields
    and source (compared apart, never imported) and those the entity's import derives otherwise."""
    left_out = {"custom_fields", "source", *besides}
    return tuple(f for f in created_fields if f not in left_out)


def _field_of(error: AppError) -> str | None:
    errors = error.extra.get("errors")
    if isinstance(errors, list) and errors:
        return str(errors[0]["loc"][-1])
    return None


def _detail(error: AppError) -> str:
    """An API error's message for a row: a field's own message, without the field's name."""
    errors = error.extra.get("errors")
    if isinstance(errors, list) and errors:
        return str(errors[0]["msg"])
    return error.detail


def _message(exc: ValueError) -> str:
    message = str(exc)
    return message.removeprefix("Value error, ")


class Handler:
    """Validation and bulk writing of one entity."""

    spec: ClassVar[EntityFields]
    model: ClassVar[Any]
    parsers: ClassVar[dict[str, Parser]]
    #: Fields that may not be emptied (checked when their column is present).
    not_null: ClassVar[tuple[str, ...]] = ()
    #: Columns the stored rows are compared on (besides custom fields).
    compared: ClassVar[tuple[str, ...]] = ()

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.out = ctx.outcome
        self.definitions: dict[str, CustomField] = {}
        self.members: dict[str, int] = {}
        self.analyzed_at = 0
        #: Errors found by `clean` (validation may run beside the writing of the previous chunk, so its
        #: errors are kept apart and added to the outcome in row order by the caller).
        self.rejected: list[tuple[int, str | None, str]] = []

    # Set-up --------------------------------------------------------------------------------------

    async def prepare(self, db: AsyncSession) -> None:
        """Per-job lookups: custom field definitions and the organization's members by email."""
        org = self.ctx.organization_id
        rows = await db.scalars(
            select(CustomField).where(
                CustomField.organization_id == org, CustomField.entity == self.spec.entity_type
            )
        )
        self.definitions = {d.key: d for d in rows}
        unknown = [
            f[len(CUSTOM_FIELD_PREFIX) :]
            for f in self.ctx.headers
            if f.startswith(CUSTOM_FIELD_PREFIX) and f[len(CUSTOM_FIELD_PREFIX) :] not in self.definitions
        ]
        if unknown:
            raise ValueError(f"unknown custom field {unknown[0]!r} for {self.spec.entity}")
        members = await db.execute(
            select(func.lower(User.email), User.id)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.organization_id == org)
        )
        self.members = dict(members.tuples().all())

    # Validation ----------------------------------------------------------------------------------

    def column(self, name: str) -> str:
        return self.ctx.headers.get(name, name)

    def invalid(self, number: int, column: str | None, message: str) -> None:
        """Record a validation error of a row (see `rejected`)."""
        self.rejected.append((number, column, message))

    def take_rejected(self) -> list[tuple[int, str | None, str]]:
        """The validation errors recorded since the last call."""
        rejected, self.rejected = self.rejected, []
        return rejected

    def clean(self, number: int, cells_by_field: dict[str, str | None]) -> Row | None:
        """The row's values, or None when a cell is invalid (its errors are recorded)."""
        values: dict[str, Any] = {}
        custom: dict[str, Any] = {}
        ok = True
        for name, raw in cells_by_field.items():
            if name.startswith(CUSTOM_FIELD_PREFIX):
                key = name[len(CUSTOM_FIELD_PREFIX) :]
                if raw is None:
                    custom[key] = None
                    continue
                try:
                    custom[key] = cells.custom_value(self.definitions[key], raw)
                except ValueError as exc:
                    self.invalid(number, self.column(name), str(exc))
                    ok = False
                continue
            if raw is None:
                if name in self.not_null:
                    self.invalid(number, self.column(name), f"{name} is required")
                    ok = False
                values[name] = None
                continue
            try:
                values[name] = self.parsers[name](raw)
            except ValueError as exc:
                self.invalid(number, self.column(name), _message(exc))
                ok = False
        if not ok or not self.check(number, values):
            return None
        return Row(number, values, custom, key=values.get(self.spec.natural_key))

    def check(self, number: int, values: dict[str, Any]) -> bool:
        """Rules across cells of one row; record errors and return False when broken."""
        return True

    def refuse(self, number: int, broken: Broken) -> None:
        """Record a row a record rule refused, with the API's message and code."""
        column = self.column(broken.field) if broken.field else None
        self.out.error(number, column, _detail(broken.error), broken.error.code)

    def follows(self, number: int, rule: Callable[[], None], columns: dict[str, str] | None = None) -> bool:
        """Run one of the entity's own rules on a row's cells (it raises the API's 422); a refusal is
        the row's error, in the column of the field it names (`columns` maps a field to the import's)."""
        try:
            rule()
        except AppError as error:
            field = _field_of(error)
            column = self.column((columns or {}).get(field, field)) if field else None
            self.invalid(number, column, _detail(error))
            return False
        return True

    def user(
        self, number: int, name: str, values: dict[str, Any], target: str, record: dict[str, Any]
    ) -> bool:
        """`<x>_email` → a member's user id in `record[target]`."""
        if name not in values:
            return True
        email = values[name]
        if email is None:
            record[target] = None
            return True
        user_id = self.members.get(email)
        if user_id is None:
            self.out.error(number, self.column(name), f"{email} is not a member of this organization")
            return False
        record[target] = user_id
        return True

    # Writing -------------------------------------------------------------------------------------

    async def write(self, db: AsyncSession, rows: list[Row]) -> None:
        rows = await self.resolve(db, rows)
        keys = [r.key for r in rows if r.key is not None]
        existing = await self.existing(db, keys) if keys else {}
        creates: list[Row] = []
        updates: list[Change] = []
        for row in rows:
            current = existing.get(row.key) if row.key is not None else None
            if current is None:
                if self.creatable(row):
                    creates.append(row)
                continue
            if current.get("missing"):
                self.out.error(
                    row.number,
                    self.column(self.spec.natural_key),
                    f"no {self.spec.entity_type} with {self.spec.natural_key} {row.key} in this organization",
                )
                continue
            if current.get("deleted_at") is not None:
                self.out.error(
                    row.number,
                    self.column(self.spec.natural_key),
                    f"a deleted {self.spec.entity_type} has this {self.spec.natural_key}; restore it first",
                )
                continue
            if self.ctx.on_conflict == "skip":
                self.out.skipped += 1
                continue
            changes = self.diff(row, current)
            if changes is None:
                continue
            if changes:
                updates.append((row, current, changes))
            else:
                self.out.skipped += 1
        if creates:
            await self.insert(db, creates)
            await self._analyze_when_grown(db)
        if updates:
            updates = await self.lock_changed(db, updates)
        if updates:
            await self.apply(db, updates)

    async def _analyze_when_grown(self, db: AsyncSession) -> None:
        """Refresh the table's planner statistics each time the job has doubled what it inserted (from
        1 000 rows on): a table filled by the import would otherwise look empty to the planner, which
        then scans the whole organization instead of the natural key's index for every chunk."""
        created = self.out.created_by_type[self.spec.entity_type]
        if created >= max(1000, 2 * self.analyzed_at):
            # Only the columns the key lookups filter on: cheap, and it refreshes the table's size.
            table, key = self.model.__tablename__, self.spec.natural_key
            await db.execute(text(f'ANALYZE "{table}" (organization_id, "{key}")'))
            self.analyzed_at = created

    async def lock_changed(self, db: AsyncSession, updates: list[Change]) -> list[Change]:
        """Lock the rows about to change; one written by someone else since it was read is reported
        (its changes were computed from a stale version) instead of overwriting that write."""
        table = self.model.__table__
        result = await db.execute(
            select(table.c.id, table.c.version)
            .where(table.c.id.in_([current["id"] for _row, current, _changes in updates]))
            .with_for_update()
        )
        versions = dict(result.tuples().all())
        kept = []
        for row, current, changes in updates:
            if versions.get(current["id"]) != current["version"]:
                self.out.error(
                    row.number,
                    None,
                    f"this {self.spec.entity_type} changed during the import; import the row again",
                )
            else:
                kept.append((row, current, changes))
        return kept

    async def resolve(self, db: AsyncSession, rows: list[Row]) -> list[Row]:
        """Fill `row.record` (model columns); drop rows whose references fail."""
        return rows

    async def existing(self, db: AsyncSession, keys: list[Any]) -> dict[Any, dict[str, Any]]:
        raise NotImplementedError

    def creatable(self, row: Row) -> bool:
        """Required fields of a new record; defaults filled in `row.record`."""
        for name in self.spec.required:
            if row.record.get(name) is None:
                self.out.error(
                    row.number, self.column(name), f"{name} is required for a new {self.spec.entity_type}"
                )
                return False
        custom = {k: v for k, v in row.custom.items() if v is not None}
        if not self.required_custom(row, custom):
            return False
        row.record["custom_fields"] = custom
        return True

    def required_custom(self, row: Row, custom: dict[str, Any]) -> bool:
        for key, definition in self.definitions.items():
            if definition.required and custom.get(key) in (None, "", []):
                self.out.error(
                    row.number, self.column(CUSTOM_FIELD_PREFIX + key), f"custom field {key} is required"
                )
                return False
        return True

    def diff(self, row: Row, current: dict[str, Any]) -> dict[str, Any] | None:
        """The changed columns (empty: unchanged; None: the row failed)."""
        changes = {k: v for k, v in row.record.items() if k in self.compared and current[k] != v}
        if row.custom:
            merged = dict(current["custom_fields"] or {})
            for key, value in row.custom.items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            if merged != (current["custom_fields"] or {}):
                if not self.required_custom(row, merged):
                    return None
                changes["custom_fields"] = merged
        return changes

    def base_record(self) -> dict[str, Any]:
        """Columns every new row carries."""
        now = utc_now()
        return {
            "organization_id": self.ctx.organization_id,
            "created_at": now,
            "updated_at": now,
            "version": 1,
        }

    def new_records(self, rows: Sequence[Row], defaults: dict[str, Any]) -> list[dict[str, Any]]:
        base = self.base_record()
        return [{**base, **defaults, **row.record} for row in rows]

    async def insert(self, db: AsyncSession, rows: list[Row]) -> None:
        raise NotImplementedError

    async def insert_keyed(
        self,
        db: AsyncSession,
        rows: list[Row],
        defaults: dict[str, Any],
        key_column: Any,
        index_elements: list[Any],
        index_where: Any,
    ) -> list[tuple[Row, int]]:
        """Insert rows: keyed ones with ON CONFLICT DO NOTHING on the key's unique index (a row stored
        meanwhile by someone else is reported), unkeyed ones plainly. Returns (row, new id) pairs."""
        model = self.model
        keyed = [r for r in rows if r.key is not None]
        plain = [r for r in rows if r.key is None]
        done: list[tuple[Row, int]] = []
        if keyed:
            stmt = (
                insert(model.__table__)
                .on_conflict_do_nothing(index_elements=index_elements, index_where=index_where)
                .returning(model.id, key_column)
            )
            result = await db.execute(stmt, self.new_records(keyed, defaults))
            ids = {key: row_id for row_id, key in result.tuples()}
            for row in keyed:
                row_id = ids.get(row.key)
                if row_id is None:
                    self.out.error(
                        row.number,
                        self.column(self.spec.natural_key),
                        f"{self.spec.natural_key} {row.key} was stored by someone else meanwhile",
                    )
                else:
                    done.append((row, row_id))
        if plain:
            stmt = insert(model.__table__).returning(model.id, sort_by_parameter_order=True)
            result = await db.execute(stmt, self.new_records(plain, defaults))
            done.extend(zip(plain, result.scalars().all(), strict=True))
        self.out.created += len(done)
        self.out.created_by_type[self.spec.entity_type] += len(done)
        return done

    async def apply(self, db: AsyncSession, updates: list[Change]) -> None:
        """Bulk UPDATE by primary key, grouped by the set of changed columns."""
        now = utc_now()
        groups: dict[frozenset[str], list[dict[str, Any]]] = defaultdict(list)
        for _row, current, changes in updates:
            params = {"id": current["id"], "version": current["version"] + 1, "updated_at": now, **changes}
            groups[frozenset(params)].append(params)
        table = self.model.__table__
        for names, group in groups.items():
            stmt = (
                update(table)
                .where(table.c.id == bindparam("p_id"))
                .values({name: bindparam(f"p_{name}") for name in names if name != "id"})
            )
            await db.execute(stmt, [{f"p_{k}": v for k, v in params.items()} for params in group])
        self.out.updated += len(updates)
        self.out.updated_by_type[self.spec.entity_type] += len(updates)

    async def live_unique(
        self, db: AsyncSession, column: Any, key: Any, keys: list[Any]
    ) -> dict[Any, dict[str, Any]]:
        """Stored rows by key among the live ones the key's partial unique index covers (`column` set,
        source manual/registration/import)."""
        model = self.model
        where = [
            model.organization_id == self.ctx.organization_id,
            model.deleted_at.is_(None),
            column.is_not(None),
            text(f"{model.__tablename__}.{UNIQUE_SOURCES}"),  # literal, so the partial index applies
        ]
        return await self.columns_of(db, where, key, keys)

    async def columns_of(
        self,
        db: AsyncSession,
        where: Iterable[Any],
        key: Any,
        keys: list[Any],
        extra: Sequence[Any] = (),
    ) -> dict[Any, dict[str, Any]]:
        """Stored rows (id, version, compared columns, custom fields) by key (read without a lock:
        `lock_changed` locks only the rows that will change)."""
        model = self.model
        cols = [model.id, model.version, model.custom_fields, *extra]
        cols += [getattr(model, c) for c in self.compared if c not in ("custom_fields",)]
        # The keys as one array parameter (cheap to compile and bind whatever their number), each
        # probing the key's index on its own (LATERAL … LIMIT 1): the planner would otherwise weigh
        # thousands of probes against one scan of the organization's rows and often scan.
        element = String() if isinstance(key.type, NullType) else key.type
        wanted = func.unnest(bindparam("keys", keys, type_=ARRAY(element))).table_valued("key")
        wanted = wanted.render_derived(name="wanted")
        found = select(key.label("_key"), *cols).where(*where, key == wanted.c.key).limit(1).lateral("found")
        stmt = select(found).select_from(wanted).join(found, true())
        result = await db.execute(stmt)
        out: dict[Any, dict[str, Any]] = {}
        for mapping in result.mappings():
            out.setdefault(mapping["_key"], dict(mapping))
        return out
