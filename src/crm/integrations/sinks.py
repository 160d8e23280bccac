# ruff: noqa: S608  (identifiers in the SQL come from TARGET_SPECS; values are bound parameters)
"""Bulk upserts of mapped records into their target tables (SPEC §13).

A page of records of one target becomes one `INSERT … SELECT FROM jsonb_to_recordset(:rows) ON CONFLICT
(organization_id, source, external_id) DO UPDATE … WHERE <the row differs> RETURNING (xmax = 0)`: the
whole page is a single bind parameter, references to other synced rows (`*_external_id`) are resolved to
local ids inside the statement, and rows that did not change are neither written nor returned, so the
counts fall out of the statement (created = inserted, updated = returned but not inserted, unchanged = the
rest). Document positions are replaced per document, only for documents whose positions changed.

Values are checked against the target's columns before they reach SQL: a record with an unknown field, a
value of the wrong type or one that does not fit its column is reported back as failed, never fatal.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from sqlalchemy import Boolean, Date, DateTime, Integer, Numeric, String, Table, Text, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from crm.deals.repository import DealHistoryRepository, HistoryMove
from crm.integrations.base import SyncRecord
from crm.models import (
    Company,
    Contact,
    Deal,
    Product,
    ProductFolder,
    PurchaseDocument,
    PurchaseDocumentPosition,
    SalesDocument,
    SalesDocumentPosition,
    StockLevel,
    Store,
)
from crm.models.company import UNIQUE_SOURCES

_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]
MAX_WARNING_LENGTH = 50


@dataclass(frozen=True, slots=True)
class Ref:
    """A local id column filled from the provider's id of another synced row."""

    column: str  # e.g. folder_id
    key: str  # e.g. folder_external_id (in the record's values)
    table: str  # the referenced table (matched on organization, source and external_id)
    stored: bool = True  # False: the key is only a lookup hint, not a column of the row


@dataclass(frozen=True, slots=True)
class Target:
    table: Table
    conflict: tuple[str, ...]
    index_where: str | None = None
    refs: tuple[Ref, ...] = ()
    #: (warning, SQL condition over the source row `r`) added to `sync_warnings` when true.
    duplicates: tuple[tuple[str, str, str], ...] = ()
    children: Table | None = None
    child_refs: tuple[Ref, ...] = ()
    versioned: bool = False
    keeps_external_id: bool = True
    #: Columns a provider may not set (server-owned or resolved by the engine).
    owned: frozenset[str] = field(default_factory=frozenset)
    #: SQL naming a stored row's external id (`t` is the table), for snapshot sweeps.
    key_sql: str = "t.external_id"
    #: column → boolean column: while the flag is set on a stored row, a sync keeps its value.
    kept: tuple[tuple[str, str], ...] = ()
    #: Deals: stage and status changes write `deal_history` rows, as changes through the API do.
    history: bool = False


_SERVER_OWNED = frozenset(
    {
        "id",
        "organization_id",
        "source",
        "external_id",
        "created_at",
        "updated_at",
        "version",
        "deleted_at",
        "search_vector",
        "sync_warnings",
        "document_id",
        "min_stock_manual",
    }
)

_DOCUMENT_REFS = (
    Ref("company_id", "counterparty_external_id", "company"),
    Ref("contact_id", "counterparty_external_id", "contact"),
    Ref("store_id", "store_external_id", "store"),
)
_POSITION_REFS = (Ref("product_id", "product_external_id", "product"),)

_EMAIL_TAKEN = (
    "duplicate_email",
    "email",
    "r.email IS NOT NULL AND EXISTS (SELECT 1 FROM contact m WHERE m.organization_id = CAST(:org AS bigint) "
    "AND m.email IS NOT NULL AND lower(m.email) = lower(r.email) AND m.deleted_at IS NULL "
    f"AND m.{UNIQUE_SOURCES})",
)
_INN_TAKEN = (
    "duplicate_inn",
    "inn",
    "r.inn IS NOT NULL AND EXISTS (SELECT 1 FROM company m WHERE m.organization_id = CAST(:org AS bigint) "
    f"AND m.inn = r.inn AND m.deleted_at IS NULL AND m.{UNIQUE_SOURCES})",
)


def _target(table: Any, **kwargs: Any) -> Target:
    refs: tuple[Ref, ...] = kwargs.get("refs", ())
    owned = _SERVER_OWNED | {ref.column for ref in refs}
    return Target(table=table.__table__, owned=frozenset(owned), **kwargs)


_KEY = ("organization_id", "source", "external_id")


def _document(model: Any, positions: Any) -> Target:
    """A document target: its counterparty and store resolved, its positions replaced as a whole."""
    return _target(
        model, conflict=_KEY, refs=_DOCUMENT_REFS, children=positions.__table__, child_refs=_POSITION_REFS
    )


_LIVE_KEY = "external_id IS NOT NULL"

TARGET_SPECS: dict[str, Target] = {
    "product_folder": _target(
        ProductFolder, conflict=_KEY, refs=(Ref("parent_id", "parent_external_id", "product_folder"),)
    ),
    "product": _target(
        Product,
        conflict=_KEY,
        refs=(Ref("folder_id", "folder_external_id", "product_folder"),),
        kept=(("min_stock", "min_stock_manual"),),
    ),
    "store": _target(Store, conflict=_KEY),
    "stock_level": _target(
        StockLevel,
        conflict=("organization_id", "source", "product_external_id", "store_external_id"),
        refs=(
            Ref("product_id", "product_external_id", "product"),
            Ref("store_id", "store_external_id", "store"),
        ),
        keeps_external_id=False,
        key_sql="t.product_external_id || ':' || t.store_external_id",
    ),
    "company": _target(
        Company, conflict=_KEY, index_where=_LIVE_KEY, duplicates=(_INN_TAKEN,), versioned=True
    ),
    "contact": _target(
        Contact,
        conflict=_KEY,
        index_where=_LIVE_KEY,
        refs=(Ref("company_id", "company_external_id", "company", stored=False),),
        duplicates=(_EMAIL_TAKEN,),
        versioned=True,
    ),
    "deal": _target(
        Deal,
        conflict=_KEY,
        index_where=_LIVE_KEY,
        refs=(
            Ref("contact_id", "contact_external_id", "contact", stored=False),
            Ref("company_id", "company_external_id", "company", stored=False),
        ),
        versioned=True,
        history=True,
    ),
    "sales_document": _document(SalesDocument, SalesDocumentPosition),
    "purchase_document": _document(PurchaseDocument, PurchaseDocumentPosition),
}


class InvalidValues(ValueError):
    """A mapped record whose values do not fit the target's columns."""


@dataclass(slots=True)
class UpsertResult:
    created: int = 0
    updated: int = 0
    deleted: int = 0
    failed: list[tuple[SyncRecord, str]] = field(default_factory=list)


# --- validation --------------------------------------------------------------------------------------


def _sql_type(column: Any) -> str:
    return str(column.type.compile(dialect=_DIALECT))


Checker = Callable[[Any], Any]


def _checker(column: Any) -> Checker:
    """A function giving the JSON-ready form of a value for `column`, or raising InvalidValues.

    Built once per column (`_columns`): a page's rows are checked without looking at column types
    again."""
    name = column.name
    required = not column.nullable and column.server_default is None
    convert = _converter(column.type, name)

    def check(value: Any) -> Any:
        if value is None:
            if required:
                raise InvalidValues(f"{name} is required")
            return None
        return convert(value)

    return check


def _instance_of(types: type | tuple[type, ...], message: str) -> Checker:
    def convert(value: Any) -> Any:
        if not isinstance(value, types):
            raise InvalidValues(message)
        return value

    return convert


def _parsed(
    name: str, what: str, kind: type, parse: Callable[[str], Any], finish: Callable[[Any], str]
) -> Checker:
    """A date or time value: an instance of `kind`, or a string `parse` reads as one."""

    def convert(value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = parse(value)
            except ValueError:
                raise InvalidValues(f"{name} must be a {what}") from None
        if not isinstance(value, kind):
            raise InvalidValues(f"{name} must be a {what}")
        return finish(value)

    return convert


def _timestamp(value: datetime) -> str:
    return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).isoformat()


def _converter(kind: Any, name: str) -> Checker:
    """The check of a non-null value for a column type."""
    if isinstance(kind, ARRAY):
        limit = getattr(kind.item_type, "length", None)

        def check_array(value: Any) -> Any:
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise InvalidValues(f"{name} must be a list of strings")
            if limit and any(len(v) > limit for v in value):
                raise InvalidValues(f"{name} has an item longer than {limit} characters")
            return list(value)

        return check_array
    if isinstance(kind, JSONB):
        return _instance_of((dict, list), f"{name} must be an object")
    if isinstance(kind, Boolean):
        return _instance_of(bool, f"{name} must be a boolean")
    if isinstance(kind, Numeric):
        precision, scale = kind.precision or 38, kind.scale or 0
        bound = Decimal(10) ** (precision - scale)

        def check_number(value: Any) -> Any:
            if isinstance(value, bool) or not isinstance(value, Decimal | int | float | str):
                raise InvalidValues(f"{name} must be a number")
            try:
                number = Decimal(str(value)) if not isinstance(value, Decimal) else value
            except InvalidOperation:
                raise InvalidValues(f"{name} must be a number") from None
            if not number.is_finite():
                raise InvalidValues(f"{name} must be a finite number")
            if abs(number) >= bound:
                raise InvalidValues(f"{name} is out of range")
            return str(number)

        return check_number
    if isinstance(kind, Integer):
        small = kind.__class__.__name__ != "BigInteger"

        def check_integer(value: Any) -> Any:
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidValues(f"{name} must be an integer")
            if small and abs(value) >= 2**31:
                raise InvalidValues(f"{name} is out of range")
            return value

        return check_integer
    if isinstance(kind, DateTime):
        return _parsed(
            name,
            "timestamp",
            datetime,
            lambda v: datetime.fromisoformat(v.replace("Z", "+00:00")),
            _timestamp,
        )
    if isinstance(kind, Date):
        return _parsed(name, "date", date, date.fromisoformat, date.isoformat)
    if isinstance(kind, String | Text):
        length = getattr(kind, "length", None) or 0

        def check_text(value: Any) -> Any:
            if not isinstance(value, str):
                raise InvalidValues(f"{name} must be a string")
            if "\x00" in value:
                raise InvalidValues(f"{name} contains a NUL character")
            if length and len(value) > length:
                raise InvalidValues(f"{name} is longer than {length} characters")
            return value

        return check_text
    return lambda value: value  # pragma: no cover - no other column types are synced


def _virtual(value: Any, key: str) -> Any:
    if value is not None and not isinstance(value, str):
        raise InvalidValues(f"{key} must be a string")
    return value


@dataclass(frozen=True, slots=True)
class _Columns:
    """What rows of one table may hold: a checker per settable column (None: a lookup key), and the
    columns a row must name."""

    checkers: dict[str, Checker | None]
    required: tuple[str, ...]


_COLUMNS: dict[tuple[str, frozenset[str], frozenset[str]], _Columns] = {}


def _columns(table: Table, owned: frozenset[str], virtual: frozenset[str]) -> _Columns:
    key = (table.name, owned, virtual)
    known = _COLUMNS.get(key)
    if known is None:
        checkers: dict[str, Checker | None] = {
            column.name: _checker(column)
            for column in table.columns
            if column.name not in owned and column.computed is None
        }
        checkers.update(dict.fromkeys(virtual))
        required = tuple(
            column.name
            for column in table.columns
            if not column.nullable
            and column.server_default is None
            and column.default is None
            and column.name not in owned
            and not column.primary_key
        )
        known = _COLUMNS[key] = _Columns(checkers, required)
    return known


def _check_row(
    table: Table, owned: frozenset[str], values: Mapping[str, Any], virtual: frozenset[str]
) -> dict[str, Any]:
    columns = _columns(table, owned, virtual)
    checkers = columns.checkers
    row: dict[str, Any] = {}
    for key, value in values.items():
        try:
            check = checkers[key]
        except KeyError:
            raise InvalidValues(f"{key} is not a field of {table.name}") from None
        row[key] = _virtual(value, key) if check is None else check(value)
    for name in columns.required:
        if name not in row:
            raise InvalidValues(f"{name} is required")
    return row


def prepare(target: Target, record: SyncRecord) -> dict[str, Any]:
    """The record as a row for `jsonb_to_recordset` (raises InvalidValues)."""
    if not isinstance(record.external_id, str) or not record.external_id or len(record.external_id) > 100:
        raise InvalidValues("external id must be a string of 1 to 100 characters")
    virtual = frozenset(ref.key for ref in target.refs if not ref.stored)
    row = _check_row(target.table, target.owned, record.values, virtual)
    if target.keeps_external_id:
        row["external_id"] = record.external_id
    warnings = [w for w in record.warnings if isinstance(w, str)]
    row["_warnings"] = [w[:MAX_WARNING_LENGTH] for w in warnings]
    if target.children is not None:
        child_owned = _SERVER_OWNED | {ref.column for ref in target.child_refs}
        children = []
        for index, child in enumerate(record.children):
            try:
                children.append(_check_row(target.children, frozenset(child_owned), child, frozenset()))
            except InvalidValues as exc:
                raise InvalidValues(f"position {index + 1}: {exc}") from None
        row["_children"] = children
    return row


# --- SQL -----------------------------------------------------------------------------------------------


def _lookup(ref: Ref, source_expr: str) -> str:
    return (
        f"(SELECT x.id FROM {ref.table} x WHERE x.organization_id = CAST(:org AS bigint) "
        "AND x.source = CAST(:source AS varchar) "
        f"AND x.external_id = {source_expr})"
    )


@functools.lru_cache(maxsize=256)
def _upsert_sql(target: Target, columns: tuple[str, ...]) -> str:
    table = target.table
    stored = [c for c in columns if c in table.columns]
    refs = [ref for ref in target.refs if ref.key in columns]
    record_def = [f"{c} {_sql_type(table.columns[c])}" for c in stored]
    record_def += [f"{ref.key} text" for ref in refs if not ref.stored]
    if target.keeps_external_id:
        record_def.append("external_id text")
    has_warnings = "sync_warnings" in table.columns
    if has_warnings:
        record_def.append("_warnings varchar(50)[]")

    insert_cols = ["organization_id", "source"]
    select_exprs = ["CAST(:org AS bigint)", "CAST(:source AS varchar)"]
    if target.keeps_external_id:
        insert_cols.append("external_id")
        select_exprs.append("r.external_id")
    insert_cols += stored
    select_exprs += [f"r.{c}" for c in stored]
    for ref in refs:
        insert_cols.append(ref.column)
        select_exprs.append(_lookup(ref, f"r.{ref.key}"))
    if has_warnings:
        warnings = "coalesce(r._warnings, CAST('{}' AS varchar(50)[]))"
        for name, key, condition in target.duplicates:
            if key in columns:
                warnings += (
                    f" || CASE WHEN {condition} THEN CAST(ARRAY['{name}'] AS varchar(50)[]) "
                    "ELSE CAST('{}' AS varchar(50)[]) END"
                )
        insert_cols.append("sync_warnings")
        select_exprs.append(warnings)

    compared = [c for c in insert_cols if c not in target.conflict and c not in ("organization_id", "source")]
    if target.history and "stage" in stored:
        # A new deal has entered its stage: stored with the row, so the history trigger that keeps
        # `entered_stages` has nothing to rewrite (a second version of every new deal otherwise).
        insert_cols.append("entered_stages")
        select_exprs.append("ARRAY[r.stage]")
    kept = dict(target.kept)

    def incoming(column: str) -> str:
        flag = kept.get(column)
        return (
            f"CASE WHEN t.{flag} THEN t.{column} ELSE EXCLUDED.{column} END" if flag else f"EXCLUDED.{column}"
        )

    assignments = [f"{c} = {incoming(c)}" for c in compared]
    assignments.append("updated_at = now()")
    if target.versioned:
        assignments.append("version = t.version + 1")
    differs = (
        f"({', '.join(f't.{c}' for c in compared)}) IS DISTINCT FROM "
        f"({', '.join(incoming(c) for c in compared)})"
    )
    if len(compared) == 1:
        differs = f"t.{compared[0]} IS DISTINCT FROM {incoming(compared[0])}"
    if "deleted_at" in table.columns:
        # A record the source delivers again is live again.
        assignments.append("deleted_at = NULL")
        differs = f"t.deleted_at IS NOT NULL OR {differs}"
    where = f" WHERE {target.index_where}" if target.index_where else ""
    return (
        f"INSERT INTO {table.name} AS t ({', '.join(insert_cols)}) "
        f"SELECT {', '.join(select_exprs)} "
        f"FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r({', '.join(record_def)}) "
        f"ON CONFLICT ({', '.join(target.conflict)}){where} DO UPDATE SET {', '.join(assignments)} "
        f"WHERE {differs} "
        "RETURNING t.id, (t.xmax = 0) AS inserted"
        + (", t.pipeline_id, t.stage, t.status, t.created_at, t.updated_at" if target.history else "")
    )


def _dumps(rows: list[dict[str, Any]]) -> str:
    return orjson.dumps(rows, default=str).decode()


async def _resolve_self_refs(
    session: AsyncSession, target: Target, org: int, source: str, ids: list[str]
) -> None:
    """A row referencing another row of the same table (a folder's parent) may arrive before it:
    resolve references from and to the rows of this page once they are all stored."""
    for ref in target.refs:
        if ref.table != target.table.name or not ref.stored:
            continue
        name = target.table.name
        await session.execute(
            text(
                f"UPDATE {name} t SET {ref.column} = {_lookup(ref, f't.{ref.key}')}, updated_at = now() "
                f"WHERE t.organization_id = CAST(:org AS bigint) AND t.source = CAST(:source AS varchar) "
                f"AND (t.external_id = ANY(:ids) OR t.{ref.key} = ANY(:ids)) "
                f"AND t.{ref.column} IS DISTINCT FROM {_lookup(ref, f't.{ref.key}')}"
            ),
            {"org": org, "source": source, "ids": ids},
        )


def _same_children(existing: list[dict[str, Any]], new: list[dict[str, Any]], columns: Sequence[str]) -> bool:
    if len(existing) != len(new):
        return False
    for old, fresh in zip(existing, new, strict=True):
        for column in columns:
            a, b = old.get(column), fresh.get(column)
            if isinstance(a, Decimal) and b is not None:
                if a != Decimal(str(b)):
                    return False
            elif a != b:
                return False
    return True


async def _replace_children(
    session: AsyncSession, target: Target, org: int, source: str, rows: list[dict[str, Any]]
) -> set[int]:
    """Replace the positions of documents whose positions changed; the local ids of those."""
    assert target.children is not None
    children = target.children
    columns = sorted(
        {c for row in rows for child in row["_children"] for c in child} | {"product_external_id"}
    )
    columns = [c for c in columns if c in children.columns]
    # The documents' ids and their stored positions in one round trip (a document without positions
    # comes back once, with a NULL position). Each id is looked up on its own and each document's
    # positions through their index, whatever the planner believes about freshly loaded tables.
    current = await session.execute(
        text(
            "WITH docs AS MATERIALIZED (SELECT k.external_id, (SELECT x.id FROM "
            f"{target.table.name} x WHERE x.organization_id = CAST(:org AS bigint) "
            "AND x.source = CAST(:source AS varchar) AND x.external_id = k.external_id) AS id "
            "FROM unnest(CAST(:ids AS text[])) AS k(external_id)) "
            "SELECT docs.external_id AS _external_id, docs.id AS _doc_id, p.id AS _position_id, "
            f"{', '.join(f'p.{c}' for c in columns)} FROM docs LEFT JOIN LATERAL (SELECT * FROM "
            f"{children.name} q WHERE q.document_id = docs.id ORDER BY q.id) p ON true "
            "WHERE docs.id IS NOT NULL ORDER BY docs.id, p.id"
        ),
        {"org": org, "source": source, "ids": [r["external_id"] for r in rows]},
    )
    id_of: dict[str, int] = {}
    existing: dict[int, list[dict[str, Any]]] = {}
    for item in current.mappings():
        doc_id = item["_doc_id"]
        id_of[item["_external_id"]] = doc_id
        lines = existing.setdefault(doc_id, [])
        if item["_position_id"] is not None:
            lines.append({c: item[c] for c in columns})
    changed = [
        row
        for row in rows
        if not _same_children(existing[id_of[row["external_id"]]], row["_children"], columns)
    ]
    if not changed:
        return set()
    changed_ids = [id_of[row["external_id"]] for row in changed]
    stale = [doc_id for doc_id in changed_ids if existing[doc_id]]
    if stale:
        await session.execute(
            text(f"DELETE FROM {children.name} WHERE document_id = ANY(:docs)"), {"docs": stale}
        )
    payload = [
        {**child, "document_id": id_of[row["external_id"]], "_n": n}
        for row in changed
        for n, child in enumerate(row["_children"])
    ]
    if payload:
        child_cols = sorted({c for child in payload for c in child} - {"document_id", "_n"})
        record_def = [f"{c} {_sql_type(children.columns[c])}" for c in child_cols]
        refs = [ref for ref in target.child_refs if ref.key in child_cols]
        insert_cols = ["organization_id", "document_id", *child_cols, *(ref.column for ref in refs)]
        select_exprs = ["CAST(:org AS bigint)", "r.document_id", *(f"r.{c}" for c in child_cols)]
        select_exprs += [_lookup(ref, f"r.{ref.key}") for ref in refs]
        await session.execute(
            text(
                f"INSERT INTO {children.name} ({', '.join(insert_cols)}) "
                f"SELECT {', '.join(select_exprs)} FROM jsonb_to_recordset(CAST(:rows AS jsonb)) "
                f"AS r(document_id bigint, _n int, {', '.join(record_def)}) ORDER BY r.document_id, r._n"
            ),
            {"org": org, "source": source, "rows": _dumps(payload)},
        )
    return set(changed_ids)


@dataclass(slots=True)
class Staged:
    """One page's records of one target checked and encoded for SQL (`stage`), ready to be written
    (`write`). Staging is CPU work only, so the engine stages the next page while the database
    writes the current one."""

    target_name: str
    records: Sequence[SyncRecord]
    #: External ids the source no longer has.
    gone: list[str] = field(default_factory=list)
    #: external id → the checked row.
    prepared: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: list[tuple[SyncRecord, str]] = field(default_factory=list)
    #: (columns, rows, the rows as the JSON bind parameter) per group of rows naming the same fields.
    groups: list[tuple[tuple[str, ...], list[dict[str, Any]], str]] = field(default_factory=list)


def stage(target_name: str, records: Sequence[SyncRecord]) -> Staged:
    """Check and encode a page's records of one target (no I/O); invalid ones go to `failed`."""
    staged = Staged(target_name=target_name, records=records)
    target = TARGET_SPECS.get(target_name)
    if target_name == "member" or target is None:
        return staged
    staged.gone = [
        r.external_id for r in records if r.deleted and isinstance(r.external_id, str) and r.external_id
    ]
    # One row per external id (the last one wins); a page may repeat a record.
    prepared = staged.prepared
    for record in records:
        if record.deleted and staged.gone:
            continue
        try:
            prepared[record.external_id] = prepare(target, record)
        except InvalidValues as exc:
            staged.failed.append((record, str(exc)))
        else:
            if not target.keeps_external_id:
                prepared[record.external_id]["_key"] = record.external_id
    # Records of one page normally carry the same fields; group them when they do not, so a record
    # never clears a column it did not mention.
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in prepared.values():
        columns = tuple(sorted(k for k in row if not k.startswith("_") and k != "external_id"))
        groups.setdefault(columns, []).append(row)
    for columns, rows in groups.items():
        payload = (
            rows
            if target.children is None and target.keeps_external_id
            else [{k: v for k, v in row.items() if k not in ("_children", "_key")} for row in rows]
        )
        staged.groups.append((columns, rows, _dumps(payload)))
    return staged


async def upsert(
    session: AsyncSession,
    *,
    organization_id: int,
    source: str,
    target_name: str,
    records: Sequence[SyncRecord],
) -> UpsertResult:
    """Store one page's records of one target; invalid ones come back in `failed`."""
    return await write(
        session, organization_id=organization_id, source=source, staged=stage(target_name, records)
    )


async def write(session: AsyncSession, *, organization_id: int, source: str, staged: Staged) -> UpsertResult:
    """Store a staged page: deletions first, then one statement per group of rows."""
    target_name, records = staged.target_name, staged.records
    if target_name == "member":
        return await upsert_members(session, organization_id=organization_id, source=source, records=records)
    result = UpsertResult(failed=list(staged.failed))
    target = TARGET_SPECS.get(target_name)
    if target is None:
        result.failed = [(record, f"target {target_name!r} is not supported") for record in records]
        return result
    if staged.gone:
        result.deleted = await remove(
            session,
            organization_id=organization_id,
            source=source,
            target_name=target_name,
            external_ids=staged.gone,
        )
    if not staged.prepared:
        return result
    inserted_total = 0
    returned_total = 0
    before = (
        await _deal_states(session, organization_id, source, list(staged.prepared)) if target.history else {}
    )
    for columns, rows, payload in staged.groups:
        sql = _upsert_sql(target, columns)
        returned = (
            await session.execute(text(sql), {"org": organization_id, "source": source, "rows": payload})
        ).all()
        if target.history:
            await _write_history(session, organization_id, before, returned)
            await _keep_statistics(session, target.table.name, len(returned))
        inserted = sum(1 for row in returned if row[1])
        inserted_total += inserted
        returned_total += len(returned)
        if target.children is not None:
            changed = await _replace_children(session, target, organization_id, source, rows)
            # A document whose own fields are unchanged but whose positions changed is updated too.
            returned_total += len(changed - {row[0] for row in returned})
    if any(ref.table == target.table.name for ref in target.refs):
        await _resolve_self_refs(session, target, organization_id, source, list(staged.prepared))
    result.created = inserted_total
    result.updated = returned_total - inserted_total
    return result


#: Rows written to a table with history before its statistics are first refreshed; later refreshes
#: come each time the rows written by the session have grown fourfold.
ANALYZE_FIRST = 2_000


async def _keep_statistics(session: AsyncSession, table: str, written: int) -> None:
    """Refresh the planner's statistics of `table` and its history while a sync fills them. A first
    sync grows them from nothing; plans made on an empty table's statistics (a scan of every deal
    for each page's lookup and for the history trigger) would make each page slower than the last."""
    counts: dict[str, tuple[int, int]] = session.info.setdefault("crm_rows_written", {})
    total, next_at = counts.get(table, (0, ANALYZE_FIRST))
    total += written
    if total >= next_at:
        await session.execute(text(f"ANALYZE {table}, deal_history"))
        next_at = total * 4
    counts[table] = (total, next_at)


async def _deal_states(
    session: AsyncSession, org: int, source: str, external_ids: list[str]
) -> dict[int, tuple[int, str, str]]:
    """Stored deals of a page: id → (pipeline, stage, status), before the page is written."""
    found = await session.execute(
        text(
            "SELECT t.id, t.pipeline_id, t.stage, t.status FROM deal t "
            "WHERE t.organization_id = CAST(:org AS bigint) AND t.source = CAST(:source AS varchar) "
            "AND t.external_id = ANY(CAST(:ids AS text[])) AND t.external_id IS NOT NULL"
        ),
        {"org": org, "source": source, "ids": external_ids},
    )
    return {row[0]: (row[1], row[2], row[3]) for row in found}


async def _write_history(
    session: AsyncSession, org: int, before: dict[int, tuple[int, str, str]], returned: Sequence[Any]
) -> None:
    """The deal history rows of a written page, as the deals API writes them: a new deal enters its
    stage; a moved deal leaves its stage and enters the new one; a status change is a status row."""
    moves: list[HistoryMove] = []
    for deal_id, inserted, pipeline_id, stage, status, created_at, updated_at in returned:
        old = before.get(deal_id)
        if inserted or old is None:
            moves.append(HistoryMove(deal_id, pipeline_id, "stage", None, stage, created_at))
            continue
        old_pipeline, old_stage, old_status = old
        if old_pipeline != pipeline_id or old_stage != stage:
            moves.append(HistoryMove(deal_id, pipeline_id, "stage", old_stage, stage, updated_at))
        if old_status != status:
            moves.append(HistoryMove(deal_id, pipeline_id, "status", old_status, status, updated_at))
    await DealHistoryRepository(session, org).record_moves(moves)


async def sweep(
    session: AsyncSession,
    *,
    organization_id: int,
    source: str,
    target_name: str,
    keys: Iterable[list[str]],
) -> int:
    """Delete the organization's rows of `target_name` from `source` whose external id is not among
    `keys` (chunks of the ids a complete snapshot delivered); returns how many were deleted."""
    if target_name == "member":
        return await sweep_members(session, organization_id=organization_id, source=source, keys=keys)
    target = TARGET_SPECS[target_name]
    soft = "deleted_at" in target.table.columns
    await session.execute(text("DROP TABLE IF EXISTS _sync_seen"))
    await session.execute(text("CREATE TEMPORARY TABLE _sync_seen (k text) ON COMMIT DROP"))
    for chunk in keys:
        await session.execute(
            text("INSERT INTO _sync_seen (k) SELECT unnest(CAST(:keys AS text[]))"), {"keys": chunk}
        )
    await session.execute(text("ANALYZE _sync_seen"))
    # Freshly loaded target rows have no statistics yet; a nested loop over both sets would be
    # quadratic, so the anti join is hashed.
    await session.execute(text("SET LOCAL enable_nestloop = off"))
    # Rows of tables with `deleted_at` are soft-deleted (their history stays); others are removed.
    head = (
        f"UPDATE {target.table.name} t SET deleted_at = now(), updated_at = now() "
        if soft
        else f"DELETE FROM {target.table.name} t "
    )
    live = "AND t.deleted_at IS NULL " if soft else ""
    result = await session.execute(
        text(
            f"{head}WHERE t.organization_id = CAST(:org AS bigint) "
            f"AND t.source = CAST(:source AS varchar) {live}"
            f"AND NOT EXISTS (SELECT 1 FROM _sync_seen s WHERE s.k = {target.key_sql})"
        ),
        {"org": organization_id, "source": source},
    )
    await session.execute(text("SET LOCAL enable_nestloop = on"))
    await session.execute(text("DROP TABLE _sync_seen"))
    return int(getattr(result, "rowcount", 0) or 0)


async def remove(
    session: AsyncSession,
    *,
    organization_id: int,
    source: str,
    target_name: str,
    external_ids: Sequence[str],
) -> int:
    """The source no longer has these records: soft-delete their rows (or delete them, for tables
    without `deleted_at`); returns how many rows changed."""
    target = TARGET_SPECS[target_name]
    if not target.keeps_external_id:
        return 0
    if "deleted_at" in target.table.columns:
        statement = (
            f"UPDATE {target.table.name} t SET deleted_at = now(), updated_at = now() "
            "WHERE t.organization_id = CAST(:org AS bigint) AND t.source = CAST(:source AS varchar) "
            "AND t.external_id = ANY(CAST(:ids AS text[])) AND t.deleted_at IS NULL"
        )
    else:
        statement = (
            f"DELETE FROM {target.table.name} t WHERE t.organization_id = CAST(:org AS bigint) "
            "AND t.source = CAST(:source AS varchar) AND t.external_id = ANY(CAST(:ids AS text[]))"
        )
    result = await session.execute(
        text(statement), {"org": organization_id, "source": source, "ids": list(external_ids)}
    )
    return int(getattr(result, "rowcount", 0) or 0)


# --- organization members from a directory (the portal) -------------------------------------------------

#: The role a person brought in by a directory gets; an admin may raise it.
MEMBER_ROLE = "member"
#: Stored instead of a password hash: matches no password (the person cannot log in until an admin
#: activates them and a password is set).
NO_PASSWORD = "!"


def _member_values(record: SyncRecord) -> tuple[str, str]:
    name, email = record.values.get("full_name"), record.values.get("email")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise InvalidValues("full_name must be a string of 1 to 200 characters")
    if not isinstance(email, str) or "@" not in email or len(email) > 320:
        raise InvalidValues("email must be an e-mail address")
    if not isinstance(record.external_id, str) or not record.external_id or len(record.external_id) > 100:
        raise InvalidValues("external id must be a string of 1 to 100 characters")
    return name.strip(), email.strip().lower()


async def upsert_members(
    session: AsyncSession, *, organization_id: int, source: str, records: Sequence[SyncRecord]
) -> UpsertResult:
    """People of a directory as members: matched by the directory's id, else by e-mail; a new
    person becomes an inactive user without a password. Names and e-mails follow the directory (an
    e-mail another user holds is left as it was and flagged)."""
    result = UpsertResult()
    org = {"org": organization_id, "source": source}
    by_id: dict[str, SyncRecord] = {r.external_id: r for r in records if not r.deleted}
    for record in by_id.values():
        try:
            name, email = _member_values(record)
        except InvalidValues as exc:
            result.failed.append((record, str(exc)))
            continue
        linked = (
            await session.execute(
                text(
                    'SELECT u.id, u.email, u.full_name FROM membership m JOIN "user" u ON u.id = m.user_id '
                    "WHERE m.organization_id = :org AND m.source = :source AND m.external_id = :ext"
                ),
                {**org, "ext": record.external_id},
            )
        ).first()
        if linked is not None:
            user_id, old_email, old_name = linked
            changes: dict[str, Any] = {}
            if old_name != name:
                changes["full_name"] = name
            if old_email.lower() != email:
                taken = await session.scalar(
                    text('SELECT 1 FROM "user" WHERE lower(email) = :email AND id <> :id'),
                    {"email": email, "id": user_id},
                )
                if taken:
                    result.failed.append((record, "e-mail belongs to another user; kept the old one"))
                else:
                    changes["email"] = email
            if changes:
                assignments = ", ".join(f"{column} = :{column}" for column in changes)
                await session.execute(
                    text(f'UPDATE "user" SET {assignments}, updated_at = now() WHERE id = :id'),
                    {**changes, "id": user_id},
                )
                result.updated += 1
            continue
        user_id = await session.scalar(
            text('SELECT id FROM "user" WHERE lower(email) = :email'), {"email": email}
        )
        if user_id is None:
            user_id = await session.scalar(
                text(
                    'INSERT INTO "user" (email, full_name, password_hash, is_active, is_superuser) '
                    "VALUES (:email, :name, :hash, false, false) RETURNING id"
                ),
                {"email": email, "name": name, "hash": NO_PASSWORD},
            )
        member = await session.scalar(
            text(
                "INSERT INTO membership (organization_id, user_id, role, source, external_id) "
                "VALUES (:org, :user, :role, :source, :ext) "
                "ON CONFLICT (organization_id, user_id) DO UPDATE SET source = EXCLUDED.source, "
                "external_id = EXCLUDED.external_id WHERE membership.external_id IS NULL "
                "RETURNING (xmax = 0)"
            ),
            {**org, "user": user_id, "role": MEMBER_ROLE, "ext": record.external_id},
        )
        if member is None:
            result.failed.append((record, "the person is already a member linked to another directory entry"))
        elif member:
            result.created += 1
        else:
            result.updated += 1  # an existing member now linked to the directory
    return result


async def sweep_members(
    session: AsyncSession, *, organization_id: int, source: str, keys: Iterable[list[str]]
) -> int:
    """People gone from the directory lose their membership (their user, history and records stay);
    an owner is never removed this way."""
    seen = [key for chunk in keys for key in chunk]
    result = await session.execute(
        text(
            "DELETE FROM membership m WHERE m.organization_id = :org AND m.source = :source "
            "AND m.external_id IS NOT NULL AND m.role <> 'owner' "
            "AND NOT (m.external_id = ANY(CAST(:seen AS text[])))"
        ),
        {"org": organization_id, "source": source, "seen": seen},
    )
    return int(getattr(result, "rowcount", 0) or 0)
