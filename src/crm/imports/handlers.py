"""Per-entity import logic: validate a row, then write a chunk of rows in bulk.

A chunk is written with a handful of statements whatever its size: one SELECT of the rows already
stored under the chunk's natural keys (no lock), the insert of new rows — ON CONFLICT DO NOTHING on the
partial unique index of the key; contacts go through a binary COPY into a temporary table, the other
entities through a multi-row INSERT — one SELECT … FOR UPDATE of the rows about to change, one
executemany UPDATE by primary key per set of changed columns, plus bulk lookups of references
(companies by INN, contacts by email, dictionaries by name).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import String, Table, bindparam, func, select, text, true, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.sqltypes import NullType

from crm.imports import cells
from crm.imports.fields import (
    COMPANIES,
    CONTACTS,
    CUSTOM_FIELD_PREFIX,
    DEALS,
    ORIGINAL_PROJECT_STATUSES,
    PROJECTS,
    EntityFields,
)
from crm.models import (
    Company,
    Contact,
    CustomField,
    Deal,
    DealHistory,
    District,
    Industry,
    Membership,
    Organization,
    Pipeline,
    PipelineStage,
    Project,
    ProjectStatusHistory,
    User,
)
from crm.models.company import UNIQUE_SOURCES
from crm.pipelines.service import ensure_default_pipeline

Parser = Callable[[str], Any]
UNIQUE_SOURCE_LIST = ("manual", "registration", "import")
PROJECT_STATUSES = (
    "draft",
    "submitted",
    "in_committee",
    "supported",
    "rejected",
    "completed",
    "archived",
    "frozen",
    "withdrawn",
)
COMPANY_KINDS = ("legal_entity", "sole_proprietor", "individual", "nonprofit")
INN_LENGTH = {"legal_entity": 10, "nonprofit": 10, "sole_proprietor": 12, "individual": 12}
DEAL_STATUSES = ("new", "in_progress", "won", "lost")


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

    def error(self, row: int, column: str | None, message: str) -> None:
        if row not in self.failed_rows:
            self.failed_rows.add(row)
            self.failed += 1
        if len(self.errors) < self.max_errors:
            self.errors.append({"row": row, "column": column, "message": message})


@dataclass
class Context:
    organization_id: int
    user_id: int | None
    on_conflict: str
    #: field → the header of its column in the file (for error messages).
    headers: dict[str, str]
    outcome: Outcome


def table_of(model: Any) -> Table:
    """The Core table of a model (Core statements skip the ORM's per-row bookkeeping)."""
    table: Table = model.__table__
    return table


def _now() -> datetime:
    return datetime.now(UTC)


def _inn_kind(inn: str | None) -> str:
    return "sole_proprietor" if inn is not None and len(inn) == 12 else "legal_entity"


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
        updates: list[tuple[Row, dict[str, Any], dict[str, Any]]] = []
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

    async def lock_changed(
        self, db: AsyncSession, updates: list[tuple[Row, dict[str, Any], dict[str, Any]]]
    ) -> list[tuple[Row, dict[str, Any], dict[str, Any]]]:
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
        now = _now()
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

    async def apply(
        self, db: AsyncSession, updates: list[tuple[Row, dict[str, Any], dict[str, Any]]]
    ) -> None:
        """Bulk UPDATE by primary key, grouped by the set of changed columns."""
        now = _now()
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


def _message(exc: ValueError) -> str:
    message = str(exc)
    return message.removeprefix("Value error, ")


def _text(limit: int) -> Parser:
    return lambda v: cells.text(v, limit)


# Contacts ----------------------------------------------------------------------------------------


class ContactHandler(Handler):
    spec = CONTACTS
    model = Contact
    not_null = ("full_name",)
    compared = (
        "full_name",
        "email",
        "phone",
        "company_id",
        "job_title",
        "age",
        "gender",
        "country",
        "address",
        "tags",
        "owner_id",
        "notes",
    )
    parsers: ClassVar[dict[str, Parser]] = {
        "full_name": _text(200),
        "email": cells.email,
        "phone": lambda v: (cells.phone(v), v),
        "company_inn": cells.inn,
        "job_title": _text(200),
        "age": lambda v: cells.integer(v, 0, 150),
        "gender": _text(20),
        "country": _text(100),
        "address": _text(500),
        "tags": cells.tags,
        "owner_email": cells.email,
        "notes": _text(10_000),
    }

    async def resolve(self, db: AsyncSession, rows: list[Row]) -> list[Row]:
        inns = {r.values["company_inn"] for r in rows if r.values.get("company_inn")}
        companies = await companies_by_inn(db, self.ctx.organization_id, inns) if inns else {}
        kept: list[Row] = []
        for row in rows:
            values = row.values
            record: dict[str, Any] = {}
            for name in ("full_name", "email", "job_title", "age", "gender", "country", "address", "notes"):
                if name in values:
                    record[name] = values[name]
            if "tags" in values:
                record["tags"] = values["tags"] or []
            if "phone" in values:
                record["phone"], record["phone_raw"] = values["phone"] or (None, None)
            if "company_inn" in values:
                inn = values["company_inn"]
                record["company_id"] = companies.get(inn) if inn else None
                if inn and record["company_id"] is None:
                    self.out.error(row.number, self.column("company_inn"), f"no company with INN {inn}")
                    continue
            if not self.user(row.number, "owner_email", values, "owner_id", record):
                continue
            row.record = record
            kept.append(row)
        return kept

    def diff(self, row: Row, current: dict[str, Any]) -> dict[str, Any] | None:
        changes = super().diff(row, current)
        if changes and "phone" in changes:
            changes["phone_raw"] = row.record["phone_raw"]
        return changes

    async def existing(self, db: AsyncSession, keys: list[Any]) -> dict[Any, dict[str, Any]]:
        return await self.columns_of(
            db,
            [
                Contact.organization_id == self.ctx.organization_id,
                Contact.deleted_at.is_(None),
                Contact.email.is_not(None),
                text(f"contact.{UNIQUE_SOURCES}"),  # literal, so the partial unique index applies
            ],
            func.lower(Contact.email),
            keys,
        )

    async def insert(self, db: AsyncSession, rows: list[Row]) -> None:
        """Binary COPY of the new rows into a temporary table, then one INSERT … SELECT … ON CONFLICT DO
        NOTHING on the email's partial unique index (a row stored meanwhile by someone else is reported).
        Both run on the job's connection, inside its transaction."""
        names = _CONTACT_COPIED[1:-1]
        records = []
        for ordinal, row in enumerate(rows):
            record, custom = row.record, row.record["custom_fields"]
            records.append(
                (
                    ordinal,
                    *[record.get(name) for name in names],
                    json.dumps(custom, ensure_ascii=False) if custom else "{}",
                )
            )
        await db.execute(_CONTACT_STAGING)
        connection = await (await db.connection()).get_raw_connection()
        driver = connection.driver_connection
        assert driver is not None
        await driver.copy_records_to_table("import_contact", records=records, columns=_CONTACT_COPIED)
        # Columns equal for the whole chunk are parameters of the INSERT, not copied per row.
        result = await db.execute(_CONTACT_MERGE, {"source": "import", **self.base_record()})
        stored = {key for (key,) in result.tuples() if key is not None}
        await db.execute(text("TRUNCATE import_contact"))
        created = 0
        for row in rows:
            if row.key is None or row.key in stored:
                created += 1
            else:
                self.out.error(
                    row.number,
                    self.column("email"),
                    f"email {row.key} was stored by someone else meanwhile",
                )
        self.out.created += created
        self.out.created_by_type[self.spec.entity_type] += created


#: Columns of a new contact that vary by row, in COPY order (the others: `_CONTACT_MERGE`).
_CONTACT_COPIED = (
    "ordinal",
    "full_name",
    "email",
    "phone",
    "phone_raw",
    "company_id",
    "job_title",
    "age",
    "gender",
    "country",
    "address",
    "tags",
    "owner_id",
    "notes",
    "custom_fields",
)
_CONTACT_STAGING = text(
    "CREATE TEMPORARY TABLE IF NOT EXISTS import_contact ON COMMIT DROP AS "  # noqa: S608 - constants
    f"SELECT 0 AS ordinal, {', '.join(_CONTACT_COPIED[1:-1])}, custom_fields::text AS custom_fields "
    "FROM contact WITH NO DATA"
)
_CONTACT_SELECTED = {"tags": "coalesce(tags, '{}')", "custom_fields": "custom_fields::jsonb"}
_CONTACT_MERGE = text(
    "INSERT INTO contact (organization_id, created_at, updated_at, version, source, "  # noqa: S608 - constants
    f"{', '.join(_CONTACT_COPIED[1:])}) "
    "SELECT CAST(:organization_id AS bigint), CAST(:created_at AS timestamptz), "
    "CAST(:updated_at AS timestamptz), CAST(:version AS integer), CAST(:source AS varchar), "
    f"{', '.join(_CONTACT_SELECTED.get(name, name) for name in _CONTACT_COPIED[1:])} "
    "FROM import_contact ORDER BY ordinal "
    "ON CONFLICT (organization_id, lower(email)) "
    f"WHERE deleted_at IS NULL AND email IS NOT NULL AND {UNIQUE_SOURCES} DO NOTHING "
    "RETURNING lower(email)"
)


async def companies_by_inn(db: AsyncSession, organization_id: int, inns: Iterable[str]) -> dict[str, int]:
    """Live companies by INN (the uniquely indexed one first when a synced duplicate exists)."""
    result = await db.execute(
        select(Company.inn, Company.id)
        .where(
            Company.organization_id == organization_id,
            Company.deleted_at.is_(None),
            Company.inn.in_(list(inns)),
        )
        .order_by(Company.source.in_(UNIQUE_SOURCE_LIST).desc(), Company.id)
    )
    out: dict[str, int] = {}
    for inn, company_id in result.tuples():
        if inn is not None:
            out.setdefault(inn, company_id)
    return out


# Companies ---------------------------------------------------------------------------------------


class CompanyHandler(Handler):
    spec = COMPANIES
    model = Company
    not_null = ("name",)
    compared = (
        "name",
        "kind",
        "inn",
        "kpp",
        "ogrn",
        "website",
        "industry",
        "email",
        "phone",
        "address",
        "tags",
        "owner_id",
        "notes",
    )
    parsers: ClassVar[dict[str, Parser]] = {
        "name": _text(300),
        "kind": lambda v: cells.choice(v, COMPANY_KINDS),
        "inn": cells.inn,
        "kpp": cells.kpp,
        "ogrn": cells.ogrn,
        "website": cells.website,
        "industry": _text(200),
        "email": cells.email,
        "phone": cells.phone,
        "address": _text(500),
        "tags": cells.tags,
        "owner_email": cells.email,
        "notes": _text(10_000),
    }

    def check(self, number: int, values: dict[str, Any]) -> bool:
        kind, inn = values.get("kind"), values.get("inn")
        if kind is not None and inn is not None and len(inn) != INN_LENGTH[kind]:
            self.invalid(number, self.column("inn"), f"the INN of a {kind} has {INN_LENGTH[kind]} digits")
            return False
        return True

    async def resolve(self, db: AsyncSession, rows: list[Row]) -> list[Row]:
        kept: list[Row] = []
        for row in rows:
            values = row.values
            record = {k: v for k, v in values.items() if k in self.compared}
            if "tags" in record:
                record["tags"] = record["tags"] or []
            if "kind" in record and record["kind"] is None:
                record["kind"] = _inn_kind(values.get("inn"))
            if not self.user(row.number, "owner_email", values, "owner_id", record):
                continue
            row.record = record
            kept.append(row)
        return kept

    def creatable(self, row: Row) -> bool:
        if row.record.get("kind") is None:
            row.record["kind"] = _inn_kind(row.record.get("inn"))
        return super().creatable(row)

    async def existing(self, db: AsyncSession, keys: list[Any]) -> dict[Any, dict[str, Any]]:
        return await self.columns_of(
            db,
            [
                Company.organization_id == self.ctx.organization_id,
                Company.deleted_at.is_(None),
                Company.inn.is_not(None),
                text(f"company.{UNIQUE_SOURCES}"),  # literal, so the partial unique index applies
            ],
            Company.inn,
            keys,
        )

    async def insert(self, db: AsyncSession, rows: list[Row]) -> None:
        defaults: dict[str, Any] = {
            "source": "import",
            **dict.fromkeys(self.compared),
            "tags": [],
        }
        await self.insert_keyed(
            db,
            rows,
            defaults,
            Company.inn,
            [Company.organization_id, Company.inn],
            text(f"deleted_at IS NULL AND inn IS NOT NULL AND {UNIQUE_SOURCES}"),
        )


# Projects ----------------------------------------------------------------------------------------


def project_status(value: str) -> str:
    """A normalized status name or the original system's spelling, in any case."""
    original = ORIGINAL_PROJECT_STATUSES.get(value.strip().upper())
    if original is not None:
        return original
    return cells.choice(value, PROJECT_STATUSES)


class ProjectHandler(Handler):
    spec = PROJECTS
    model = Project
    not_null = ("name", "status")
    compared = (
        "name",
        "description",
        "client_id",
        "industry_id",
        "district_id",
        "city",
        "address",
        "own_funds_amount",
        "requested_support_amount",
        "jobs_count",
        "tax_revenue_amount",
        "status",
        "curator_id",
    )
    parsers: ClassVar[dict[str, Parser]] = {
        "external_code": _text(100),
        "name": _text(500),
        "description": _text(100_000),
        "client_inn": cells.inn,
        "client_name": _text(300),
        "client_kind": lambda v: cells.choice(v, COMPANY_KINDS),
        "industry": _text(300),
        "district": _text(300),
        "city": _text(200),
        "address": _text(500),
        "own_funds_amount": cells.money,
        "requested_support_amount": cells.money,
        "jobs_count": lambda v: cells.integer(v, 0, 2_147_483_647),
        "tax_revenue_amount": cells.money,
        "status": project_status,
        "curator_email": cells.email,
    }

    def check(self, number: int, values: dict[str, Any]) -> bool:
        kind, inn = values.get("client_kind"), values.get("client_inn")
        if kind is not None and inn is not None and len(inn) != INN_LENGTH[kind]:
            self.invalid(
                number, self.column("client_inn"), f"the INN of a {kind} has {INN_LENGTH[kind]} digits"
            )
            return False
        return True

    async def resolve(self, db: AsyncSession, rows: list[Row]) -> list[Row]:
        clients = await self._clients(db, rows)
        industries = await self._dictionary(db, Industry, [r.values.get("industry") for r in rows])
        districts = await self._dictionary(db, District, [r.values.get("district") for r in rows])
        kept: list[Row] = []
        for row in rows:
            values = row.values
            record = {
                k: v
                for k, v in values.items()
                if k in self.compared and k not in ("client_id", "industry_id", "district_id", "curator_id")
            }
            if "client_inn" in values or "client_name" in values:
                client = _client_key(values)
                if client is None:
                    record["client_id"] = None
                elif client not in clients:
                    continue  # its error is recorded
                else:
                    record["client_id"] = clients[client]
            if "industry" in values:
                name = values["industry"]
                record["industry_id"] = industries[name.lower()] if name else None
            if "district" in values:
                name = values["district"]
                record["district_id"] = districts[name.lower()] if name else None
            if not self.user(row.number, "curator_email", values, "curator_id", record):
                continue
            row.record = record
            kept.append(row)
        return kept

    async def _clients(self, db: AsyncSession, rows: list[Row]) -> dict[tuple[str, str], int]:
        """Client companies of the chunk by ("inn", INN) or ("name", lower name); missing ones created
        (`kind` from `client_kind` or the INN length). Rows that cannot get a client are reported."""
        org = self.ctx.organization_id
        wanted: dict[tuple[str, str], Row] = {}
        for row in rows:
            key = _client_key(row.values)
            if key is not None:
                wanted.setdefault(key, row)
        inns = [v for k, v in wanted if k == "inn"]
        names = [v for k, v in wanted if k == "name"]
        found: dict[tuple[str, str], int] = {}
        if inns:
            found.update({("inn", inn): cid for inn, cid in (await companies_by_inn(db, org, inns)).items()})
        if names:
            result = await db.execute(
                select(func.lower(Company.name), Company.id)
                .where(
                    Company.organization_id == org,
                    Company.deleted_at.is_(None),
                    func.lower(Company.name).in_(names),
                )
                .order_by(Company.id)
            )
            for name, cid in result.tuples():
                found.setdefault(("name", name), cid)

        new: list[tuple[tuple[str, str], dict[str, Any]]] = []
        for key, row in wanted.items():
            if key in found:
                continue
            name, inn, kind = (
                row.values.get("client_name"),
                row.values.get("client_inn"),
                row.values.get("client_kind"),
            )
            if not name:
                self.out.error(
                    row.number, self.column("client_name"), "client_name is required to create the client"
                )
                continue
            now = _now()
            new.append(
                (
                    key,
                    {
                        "organization_id": org,
                        "name": name,
                        "inn": inn,
                        "kind": kind or _inn_kind(inn),
                        "source": "import",
                        "tags": [],
                        "created_at": now,
                        "updated_at": now,
                        "version": 1,
                    },
                )
            )
        if new:
            stmt = (
                insert(table_of(Company))
                .on_conflict_do_nothing(
                    index_elements=[Company.organization_id, Company.inn],
                    index_where=text(f"deleted_at IS NULL AND inn IS NOT NULL AND {UNIQUE_SOURCES}"),
                )
                .returning(Company.id, Company.inn, Company.name)
            )
            result = await db.execute(stmt, [values for _, values in new])
            created = 0
            for cid, inn, name in result.tuples():
                created += 1
                found[("inn", inn) if inn else ("name", name.lower())] = cid
            self.out.created_by_type["company"] += created
            missing = [key for key, _ in new if key not in found and key[0] == "inn"]
            if missing:  # stored by someone else meanwhile
                again = await companies_by_inn(db, org, [v for _, v in missing])
                found.update({("inn", inn): cid for inn, cid in again.items()})
        for key, row in wanted.items():
            if key not in found and row.number not in self.out.failed_rows:
                self.out.error(row.number, self.column("client_inn"), "the client could not be stored")
        return found

    async def _dictionary(self, db: AsyncSession, model: Any, names: list[str | None]) -> dict[str, int]:
        """Dictionary entries by lower-case name, missing ones created as first spelled in the file."""
        wanted: dict[str, str] = {}
        for name in names:
            if name:
                wanted.setdefault(name.lower(), name)
        if not wanted:
            return {}
        org = self.ctx.organization_id
        now = _now()
        await db.execute(
            insert(model)
            .values(
                [
                    {"organization_id": org, "name": name, "created_at": now, "updated_at": now}
                    for name in wanted.values()
                ]
            )
            .on_conflict_do_nothing(index_elements=[model.organization_id, func.lower(model.name)])
        )
        result = await db.execute(
            select(func.lower(model.name), model.id).where(
                model.organization_id == org, func.lower(model.name).in_(list(wanted))
            )
        )
        return dict(result.tuples().all())

    async def existing(self, db: AsyncSession, keys: list[Any]) -> dict[Any, dict[str, Any]]:
        return await self.columns_of(
            db,
            [Project.organization_id == self.ctx.organization_id],
            Project.external_code,
            keys,
            extra=(Project.deleted_at,),
        )

    def creatable(self, row: Row) -> bool:
        if row.key is not None:
            row.record["external_code"] = row.key
        row.record["status"] = row.record.get("status") or "draft"
        return super().creatable(row)

    async def insert(self, db: AsyncSession, rows: list[Row]) -> None:
        defaults: dict[str, Any] = dict.fromkeys(self.compared)
        defaults.update(external_code=None, frozen_from=None)
        done = await self.insert_keyed(
            db,
            rows,
            defaults,
            Project.external_code,
            [Project.organization_id, Project.external_code],
            text("external_code IS NOT NULL"),
        )
        await self._history(db, [(project_id, None, row.record["status"]) for row, project_id in done])

    async def apply(
        self, db: AsyncSession, updates: list[tuple[Row, dict[str, Any], dict[str, Any]]]
    ) -> None:
        moves: list[tuple[int, str | None, str]] = []
        for _row, current, changes in updates:
            if "status" in changes:
                old = current["status"]
                moves.append((current["id"], old, changes["status"]))
                if changes["status"] == "frozen":
                    changes["frozen_from"] = old
                elif old == "frozen":
                    changes["frozen_from"] = None
        await super().apply(db, updates)
        await self._history(db, moves)

    async def _history(self, db: AsyncSession, moves: list[tuple[int, str | None, str]]) -> None:
        """One `imported` history row per status set by the import."""
        if not moves:
            return
        now = _now()
        await db.execute(
            insert(table_of(ProjectStatusHistory)),
            [
                {
                    "organization_id": self.ctx.organization_id,
                    "project_id": project_id,
                    "from_status": old,
                    "to_status": new,
                    "actor_id": self.ctx.user_id,
                    "comment": "imported",
                    "created_at": now,
                }
                for project_id, old, new in moves
            ],
        )


def _client_key(values: dict[str, Any]) -> tuple[str, str] | None:
    inn, name = values.get("client_inn"), values.get("client_name")
    if inn:
        return ("inn", inn)
    if name:
        return ("name", name.lower())
    return None


# Deals -------------------------------------------------------------------------------------------


@dataclass
class _Stage:
    key: str
    position: int
    archived: bool


@dataclass
class _Pipeline:
    id: int
    stages: dict[str, _Stage]
    by_name: dict[str, str]

    def first(self) -> str | None:
        live = sorted((s for s in self.stages.values() if not s.archived), key=lambda s: s.position)
        return live[0].key if live else None

    def find(self, value: str) -> str | None:
        if value in self.stages:
            return value
        return self.by_name.get(value.casefold())


class DealHandler(Handler):
    spec = DEALS
    model = Deal
    not_null = ("title",)
    compared = (
        "title",
        "amount",
        "currency",
        "pipeline_id",
        "status",
        "expected_close_date",
        "lost_reason",
        "contact_id",
        "company_id",
        "owner_id",
        "notes",
    )
    parsers: ClassVar[dict[str, Parser]] = {
        "id": lambda v: cells.integer(v, 1, 9_223_372_036_854_775_807),
        "title": _text(300),
        "amount": cells.money,
        "currency": cells.currency,
        "pipeline": _text(200),
        "stage": _text(200),
        "status": lambda v: cells.choice(v, DEAL_STATUSES),
        "expected_close_date": cells.day,
        "lost_reason": _text(2000),
        "contact_email": cells.email,
        "company_inn": cells.inn,
        "owner_email": cells.email,
        "notes": _text(10_000),
    }

    async def prepare(self, db: AsyncSession) -> None:
        await super().prepare(db)
        org = self.ctx.organization_id
        await ensure_default_pipeline(db, org)
        self.currency = (
            await db.scalar(select(Organization.currency).where(Organization.id == org))
        ) or "RUB"
        self.pipelines: dict[int, _Pipeline] = {}
        self.pipeline_names: dict[str, int] = {}
        self.default_pipeline: int | None = None
        for pipeline in await db.scalars(select(Pipeline).where(Pipeline.organization_id == org)):
            self.pipelines[pipeline.id] = _Pipeline(pipeline.id, {}, {})
            self.pipeline_names.setdefault(pipeline.name.casefold(), pipeline.id)
            if pipeline.is_default:
                self.default_pipeline = pipeline.id
        for stage in await db.scalars(select(PipelineStage).where(PipelineStage.organization_id == org)):
            target = self.pipelines.get(stage.pipeline_id)
            if target is not None:
                target.stages[stage.key] = _Stage(stage.key, stage.position, stage.is_archived)
                target.by_name.setdefault(stage.name.casefold(), stage.key)

    def _pipeline(self, value: str | None) -> _Pipeline | None:
        if value is None:
            return self.pipelines.get(self.default_pipeline) if self.default_pipeline else None
        pipeline_id = self.pipeline_names.get(value.casefold())
        if pipeline_id is None and value.isdigit():
            pipeline_id = int(value)
        return self.pipelines.get(pipeline_id) if pipeline_id is not None else None

    async def resolve(self, db: AsyncSession, rows: list[Row]) -> list[Row]:
        org = self.ctx.organization_id
        inns = {r.values["company_inn"] for r in rows if r.values.get("company_inn")}
        emails = {r.values["contact_email"] for r in rows if r.values.get("contact_email")}
        companies = await companies_by_inn(db, org, inns) if inns else {}
        contacts: dict[str, int] = {}
        if emails:
            result = await db.execute(
                select(func.lower(Contact.email), Contact.id)
                .where(
                    Contact.organization_id == org,
                    Contact.deleted_at.is_(None),
                    func.lower(Contact.email).in_(list(emails)),
                )
                .order_by(Contact.source.in_(UNIQUE_SOURCE_LIST).desc(), Contact.id)
            )
            for email, cid in result.tuples():
                contacts.setdefault(email, cid)
        kept: list[Row] = []
        for row in rows:
            values = row.values
            record = {k: v for k, v in values.items() if k in self.compared}
            ok = True
            for name, target, table, what in (
                ("company_inn", "company_id", companies, "company with INN"),
                ("contact_email", "contact_id", contacts, "contact with email"),
            ):
                if name in values:
                    ref = values[name]
                    record[target] = table.get(ref) if ref else None
                    if ref and record[target] is None:
                        self.out.error(row.number, self.column(name), f"no {what} {ref}")
                        ok = False
            if "pipeline" in values:
                pipeline = self._pipeline(values["pipeline"])
                if pipeline is None:
                    self.out.error(row.number, self.column("pipeline"), f"no pipeline {values['pipeline']}")
                    ok = False
                else:
                    record["pipeline_id"] = pipeline.id
            if ok and self.user(row.number, "owner_email", values, "owner_id", record):
                row.record = record
                kept.append(row)
        return kept

    def _place(self, row: Row, pipeline_id: int, keep: str | None) -> str | None:
        """The stage key for the row in that pipeline: the given stage (key or name, not archived),
        else `keep`, else the pipeline's first stage. None (with the error recorded) when there is none."""
        pipeline = self.pipelines[pipeline_id]
        given = row.values.get("stage")
        if given:
            key = pipeline.find(given)
            if key is None or (key != keep and pipeline.stages[key].archived):
                self.out.error(row.number, self.column("stage"), f"no stage {given} in this pipeline")
                return None
            return key
        key = keep or pipeline.first()
        if key is None:
            self.out.error(row.number, self.column("stage"), "the pipeline has no active stage")
        return key

    async def existing(self, db: AsyncSession, keys: list[Any]) -> dict[Any, dict[str, Any]]:
        found = await self.columns_of(
            db,
            [Deal.organization_id == self.ctx.organization_id, Deal.deleted_at.is_(None)],
            Deal.id,
            keys,
            extra=(Deal.closed_at, Deal.stage),
        )
        for key in keys:
            if key not in found:
                found[key] = {"missing": True}
        return found

    def diff(self, row: Row, current: dict[str, Any]) -> dict[str, Any] | None:
        changes = super().diff(row, current)
        if changes is None:
            return None
        pipeline_id = row.record.get("pipeline_id", current["pipeline_id"])
        if "stage" in row.values or pipeline_id != current["pipeline_id"]:
            stage = self._place(
                row, pipeline_id, keep=current["stage"] if pipeline_id == current["pipeline_id"] else None
            )
            if stage is None:
                return None
            if stage != current["stage"] or pipeline_id != current["pipeline_id"]:
                changes["stage"] = stage
        state = {**current, **changes}
        if not self._settle(row, state, current):
            return None
        return {k: v for k, v in state.items() if (k in current and current[k] != v) or k in changes}

    def _settle(self, row: Row, state: dict[str, Any], current: dict[str, Any] | None) -> bool:
        """The deal rules: lost needs a reason (only lost keeps one), won needs an amount, closing
        stamps `closed_at` and reopening clears it."""
        status = state.get("status") or "new"
        old_status = current["status"] if current else None
        if status == "lost":
            if not state.get("lost_reason"):
                self.out.error(row.number, self.column("lost_reason"), "required when the status is lost")
                return False
        else:
            if state.get("lost_reason") and "lost_reason" in row.record:
                self.out.error(row.number, self.column("lost_reason"), "only a lost deal has a lost_reason")
                return False
            state["lost_reason"] = None
        if status == "won" and (state.get("amount") or Decimal("0")) == 0:
            self.out.error(row.number, self.column("amount"), "a deal cannot be won with amount 0")
            return False
        if status in ("won", "lost"):
            if status != old_status:
                state["closed_at"] = _now()
        else:
            state["closed_at"] = None
        return True

    def creatable(self, row: Row) -> bool:
        record = row.record
        if record.get("pipeline_id") is None:
            if self.default_pipeline is None:
                self.out.error(row.number, None, "the organization has no default pipeline")
                return False
            record["pipeline_id"] = self.default_pipeline
        stage = self._place(row, record["pipeline_id"], keep=None)
        if stage is None:
            return False
        record["stage"] = stage
        record["status"] = record.get("status") or "new"
        record["amount"] = record.get("amount") if record.get("amount") is not None else Decimal("0.00")
        record["currency"] = record.get("currency") or self.currency
        if not self._settle(row, record, None):
            return False
        return super().creatable(row)

    async def insert(self, db: AsyncSession, rows: list[Row]) -> None:
        defaults: dict[str, Any] = dict.fromkeys(self.compared)
        defaults.update(source="import", closed_at=None)
        stmt = insert(table_of(Deal)).returning(Deal.id, Deal.created_at, sort_by_parameter_order=True)
        result = await db.execute(stmt, self.new_records(rows, defaults))
        history = []
        for row, (deal_id, created_at) in zip(rows, result.tuples(), strict=True):
            history.append(
                self._history_row(
                    deal_id, row.record["pipeline_id"], "stage", None, row.record["stage"], created_at
                )
            )
        self.out.created += len(rows)
        self.out.created_by_type["deal"] += len(rows)
        await db.execute(insert(table_of(DealHistory)), history)

    async def apply(
        self, db: AsyncSession, updates: list[tuple[Row, dict[str, Any], dict[str, Any]]]
    ) -> None:
        await super().apply(db, updates)
        now = _now()
        moved = [c for _r, c, ch in updates if "stage" in ch or "pipeline_id" in ch]
        if moved:
            await db.execute(
                update(DealHistory)
                .where(
                    DealHistory.organization_id == self.ctx.organization_id,
                    DealHistory.deal_id.in_([c["id"] for c in moved]),
                    DealHistory.field == "stage",
                    DealHistory.left_at.is_(None),
                )
                .values(left_at=now)
                .execution_options(synchronize_session=False)
            )
        history = []
        for _row, current, changes in updates:
            pipeline_id = changes.get("pipeline_id", current["pipeline_id"])
            if "stage" in changes or "pipeline_id" in changes:
                stage = changes.get("stage", current["stage"])
                history.append(
                    self._history_row(current["id"], pipeline_id, "stage", current["stage"], stage, now)
                )
            if "status" in changes:
                history.append(
                    self._history_row(
                        current["id"], pipeline_id, "status", current["status"], changes["status"], now
                    )
                )
        if history:
            await db.execute(insert(table_of(DealHistory)), history)

    def _history_row(
        self, deal_id: int, pipeline_id: int, name: str, old: str | None, new: str, at: datetime
    ) -> dict[str, Any]:
        return {
            "organization_id": self.ctx.organization_id,
            "deal_id": deal_id,
            "pipeline_id": pipeline_id,
            "field": name,
            "from_value": old,
            "to_value": new,
            "actor_id": self.ctx.user_id,
            "created_at": at,
            "left_at": None,
        }


HANDLERS: dict[str, type[Handler]] = {
    "contacts": ContactHandler,
    "companies": CompanyHandler,
    "projects": ProjectHandler,
    "deals": DealHandler,
}
