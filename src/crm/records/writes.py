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
from typing import Any

from sqlalchemy import (
    ARRAY,
    CTE,
    BigInteger,
    ColumnDefault,
    Insert,
    Select,
    String,
    Table,
    Update,
    func,
    insert,
    literal,
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


def _table(model: type[Any]) -> Table:
    return plan_of(model).table


def _jsonb(value: Any) -> ColumnElement[Any]:
    return literal(value, JSONB)


def _concat(left: ColumnElement[Any], right: ColumnElement[Any]) -> ColumnElement[Any]:
    return left.op("||", return_type=JSONB)(right)


def _with_id(document: Mapping[str, Any], record_id: ColumnElement[Any]) -> ColumnElement[Any]:
    return _concat(_jsonb(dict(document)), func.jsonb_build_object(literal_column("'id'"), record_id))


def _log_ctes(record: CTE, log: Log) -> list[CTE]:
    now = datetime.now(UTC)
    record_id = record.c.id
    activity_table = _table(Activity)
    activity_columns = [*log.activity, "entity_id", "created_at"]
    activity_row = [
        *(literal(value, activity_table.c[key].type) for key, value in log.activity.items()),
        record_id,
        literal(now, activity_table.c.created_at.type),
    ]
    ctes = [
        insert(activity_table).from_select(activity_columns, select(*activity_row)).cte("record_activity")
    ]
    if log.events:
        events = _table(OutboxEvent)
        data = {"changes": dict(log.changes)}
        payload = _concat(
            _jsonb(data),
            func.jsonb_build_object(
                literal_column("'id'"),
                record_id,
                *(
                    (literal_column("'object'"), _with_id(log.object, record_id))
                    if log.object is not None
                    else ()
                ),
            ),
        )
        # One INSERT for all the write's events, in their order (their ids keep it).
        names = (
            func.unnest(literal(list(log.events), ARRAY(String)))
            .table_valued("event_type", with_ordinality="position")
            .render_derived()
        )
        rows = (
            select(
                literal(log.organization_id, events.c.organization_id.type),
                names.c.event_type,
                literal(log.entity_type, events.c.entity_type.type),
                record_id,
                literal(log.actor_id, events.c.actor_id.type),
                payload,
                literal(now, events.c.created_at.type),
            )
            .select_from(record)
            .join(names, true())
            .order_by(names.c.position)
        )
        columns = ["organization_id", "event_type", "entity_type", "entity_id", "actor_id", "payload"]
        ctes.append(insert(events).from_select([*columns, "created_at"], rows).cte("record_events"))
    return ctes


def write_statement(row: Insert | Update | int, plan: TablePlan, log: Log) -> Select[Any]:
    """`row` (returning the id and the generated columns) with the activity and events of `log`;
    given the id of a row already written, the activity and events alone."""
    if isinstance(row, int):
        record = select(literal(row, BigInteger).label("id")).cte("record_write")
    else:
        generated = (c.column for c in plan.generated if c.key != "id")
        record = row.returning(*generated, plan.table.c.id).cte("record_write")
    return select(*record.c).add_cte(*_log_ctes(record, log))


def insert_row(plan: TablePlan, values: Mapping[str, Any]) -> Insert:
    return insert(plan.table).values({plan.by_key[key].column: value for key, value in values.items()})


def update_row(plan: TablePlan, row_id: int, values: Mapping[str, Any]) -> Update:
    return (
        update(plan.table)
        .where(plan.table.c.id == row_id)
        .values({plan.by_key[key].column: value for key, value in values.items()})
    )
