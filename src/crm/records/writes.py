"""A record write as one statement: the row's INSERT or UPDATE, its activity and its domain events
(the outbox), written by one round trip without the ORM's unit of work.

    WITH record AS (INSERT INTO contact (...) VALUES (...) RETURNING id, search_vector),
         activity AS (INSERT INTO activity (...) SELECT ..., record.id, ... FROM record),
         events AS (INSERT INTO outbox_event (...) SELECT ..., record.id, ... FROM record
                    JOIN unnest(<event types>) WITH ORDINALITY ... ORDER BY ordinality)
    SELECT record.id, record.search_vector FROM record

Every value but the ones PostgreSQL makes (the id, computed columns) is known before the statement:
Python-side column defaults are applied here exactly as the ORM applies them at flush (a value left
unset, or None for a column that stores None as SQL NULL, takes the column's default), so the row
object, the activity and the event carry what the ORM would have written. The id reaches the
activity and the event inside the statement (`record.id`).

A unique violation raises `IntegrityError` from the statement itself; no SAVEPOINT is needed, since
the 409 that follows rolls the whole transaction back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import (
    ARRAY,
    CTE,
    BigInteger,
    BindParameter,
    ColumnDefault,
    Insert,
    Select,
    String,
    Table,
    Update,
    bindparam,
    func,
    insert,
    literal_column,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapper, class_mapper
from sqlalchemy.sql.elements import ColumnElement, KeyedColumnElement

from crm.models import Activity, OutboxEvent


@dataclass(frozen=True, slots=True)
class Column:
    """A mapped column as the write path needs it."""

    key: str
    column: KeyedColumnElement[Any]
    default: Callable[[], Any] | None
    onupdate: Callable[[], Any] | None
    #: None is stored as a value (JSON `null`), not left to the default.
    keeps_none: bool
    #: PostgreSQL makes the value (identity, computed, a server default without a Python one).
    generated: bool


@dataclass(frozen=True, slots=True)
class TablePlan:
    table: Table
    columns: tuple[Column, ...]
    by_key: dict[str, Column]
    generated: tuple[Column, ...]


def _python(default: Any) -> Callable[[], Any] | None:
    """A Python-side column default (or onupdate) as a function of nothing; None for none or a
    server-side one."""
    if not isinstance(default, ColumnDefault):
        return None
    arg = default.arg
    if default.is_callable:
        # SQLAlchemy wraps every callable default into one taking the execution context; ours
        # (utcnow, list, dict) ignore it.
        return lambda: arg(None)
    if default.is_scalar:
        return lambda: arg
    return None


_plans: dict[type[Any], TablePlan] = {}


def plan_of(model: type[Any]) -> TablePlan:
    plan = _plans.get(model)
    if plan is None:
        mapper: Mapper[Any] = class_mapper(model)
        columns: list[Column] = []
        for attr in mapper.column_attrs:
            column = attr.columns[0]
            default = _python(column.default)
            generated = default is None and (
                column.identity is not None
                or column.computed is not None
                or column.server_default is not None
                or column.primary_key
            )
            columns.append(
                Column(
                    key=attr.key,
                    column=column,
                    default=default,
                    onupdate=_python(column.onupdate),
                    keeps_none=bool(column.type.should_evaluate_none),
                    generated=generated,
                )
            )
        table = mapper.local_table
        assert isinstance(table, Table)
        plan = TablePlan(
            table=table,
            columns=tuple(columns),
            by_key={c.key: c for c in columns},
            generated=tuple(c for c in columns if c.generated),
        )
        _plans[model] = plan
    return plan


def insert_values(plan: TablePlan, state: Mapping[str, Any]) -> dict[str, Any]:
    """The values an INSERT of an object with these attributes writes, by attribute key, defaults
    applied (as the ORM's flush would); generated columns only when the object sets them."""
    values: dict[str, Any] = {}
    for column in plan.columns:
        value = state.get(column.key)
        if value is None and not (column.keeps_none and column.key in state):
            if column.generated:
                continue
            value = column.default() if column.default is not None else None
        values[column.key] = value
    return values


@dataclass(frozen=True, slots=True)
class Log:
    """The activity and the events of one write (see `RecordService.log`)."""

    activity: Mapping[str, Any]
    events: Sequence[str]
    entity_type: str
    organization_id: int
    actor_id: int | None
    changes: Mapping[str, Any]
    #: The record's column values as the event's `object` (its `id` is added by the statement).
    object: Mapping[str, Any] | None


#: Activity columns a `Log` carries (besides the id, `entity_id` and `created_at`).
ACTIVITY_COLUMNS = ("organization_id", "entity_type", "action", "actor_id", "changes", "payload")


def _param(name: str, type_: Any) -> BindParameter[Any]:
    return bindparam(name, type_=type_)


def _concat(left: ColumnElement[Any], right: ColumnElement[Any]) -> ColumnElement[Any]:
    return left.op("||", return_type=JSONB)(right)


def _id_object(record_id: ColumnElement[Any]) -> ColumnElement[Any]:
    return func.jsonb_build_object(literal_column("'id'"), record_id)


def log_ctes(record: CTE, *, events: bool, with_object: bool) -> list[CTE]:
    """The activity and (with `events`) the outbox rows of the row `record` writes."""
    record_id = record.c.id
    activity = plan_of(Activity).table
    activity_row = select(
        *(_param(f"activity_{key}", activity.c[key].type) for key in ACTIVITY_COLUMNS),
        record_id,
        _param("log_at", activity.c.created_at.type),
    )
    ctes = [
        insert(activity)
        .from_select([*ACTIVITY_COLUMNS, "entity_id", "created_at"], activity_row)
        .cte("record_activity")
    ]
    if events:
        outbox = plan_of(OutboxEvent).table
        document: list[ColumnElement[Any]] = [literal_column("'id'"), record_id]
        if with_object:
            document += [
                literal_column("'object'"),
                _concat(_param("event_object", JSONB), _id_object(record_id)),
            ]
        payload = _concat(_param("event_data", JSONB), func.jsonb_build_object(*document))
        # One INSERT for all the write's events, in their order (their ids keep it).
        names = (
            func.unnest(_param("event_types", ARRAY(String)))
            .table_valued("event_type", with_ordinality="position")
            .render_derived()
        )
        rows = (
            select(
                _param("activity_organization_id", outbox.c.organization_id.type),
                names.c.event_type,
                _param("activity_entity_type", outbox.c.entity_type.type),
                record_id,
                _param("activity_actor_id", outbox.c.actor_id.type),
                payload,
                _param("log_at", outbox.c.created_at.type),
            )
            .select_from(record)
            .join(names, true())
            .order_by(names.c.position)
        )
        columns = [
            "organization_id",
            "event_type",
            "entity_type",
            "entity_id",
            "actor_id",
            "payload",
            "created_at",
        ]
        ctes.append(insert(outbox).from_select(columns, rows).cte("record_events"))
    return ctes


#: Statements by shape: (model, insert/update/log, columns written, events?, event object?).
_statements: dict[tuple[Any, ...], Select[Any]] = {}


def write_statement(
    plan: TablePlan, kind: Literal["insert", "update", "log"], keys: Sequence[str], log: Log
) -> Select[Any]:
    """The statement of one write: the row's INSERT (of `keys`), UPDATE (of `keys`, by `row_id`) or,
    for `log`, none (the row is written already; `row_id` names it), then its activity and events.
    Built once per shape with bound parameters (`write_params`), so its SQL is compiled and prepared
    once per process and connection."""
    shape = (plan.table.name, kind, tuple(keys), bool(log.events), log.object is not None)
    statement = _statements.get(shape)
    if statement is None:
        values = {plan.by_key[key].column: _param(f"row_{key}", plan.by_key[key].column.type) for key in keys}
        row_id = _param("row_id", BigInteger)
        record: CTE
        if kind == "log":
            record = select(row_id.label("id")).cte("record_write")
        else:
            generated = [c.column for c in plan.generated if c.key != "id"]
            row: Insert | Update = (
                insert(plan.table).values(values)
                if kind == "insert"
                else update(plan.table).where(plan.table.c.id == row_id).values(values)
            )
            record = row.returning(*generated, plan.table.c.id).cte("record_write")
        statement = select(*record.c).add_cte(
            *log_ctes(record, events=bool(log.events), with_object=log.object is not None)
        )
        _statements[shape] = statement
    return statement


def write_params(values: Mapping[str, Any], log: Log, row_id: int | None = None) -> dict[str, Any]:
    params = {f"row_{key}": value for key, value in values.items()}
    params.update({f"activity_{key}": log.activity[key] for key in ACTIVITY_COLUMNS})
    params["log_at"] = datetime.now(UTC)
    if row_id is not None:
        params["row_id"] = row_id
    if log.events:
        params["event_types"] = list(log.events)
        params["event_data"] = {"changes": dict(log.changes)}
        if log.object is not None:
            params["event_object"] = dict(log.object)
    return params
