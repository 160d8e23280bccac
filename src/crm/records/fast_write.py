"""Fast creates: a record's `POST /{records}` answered without the framework's per-request machinery.

A create whose body needs nothing but the organization's rules checked in PostgreSQL is one
statement: the caller's access, the row, its activity and its events (the outbox) are written by a
single round trip in autocommit, on the fast paths' own connections (`crm.records.fast_read`).

    WITH record_write AS (
        INSERT INTO contact (...)
        SELECT <the row's values>
        FROM (<the caller's role in the organization>) AS access
        WHERE <the session is live> AND <the role grants contacts:write>
          AND <the organization defines no custom field for contacts>
          AND (<company_id is null> OR <it is a live company of the organization>)
          AND (<owner_id is null> OR <it is a member>)
        ON CONFLICT DO NOTHING
        RETURNING <the answer's columns>),
      record_activity AS (INSERT INTO activity ... FROM record_write),
      record_events AS (INSERT INTO outbox_event ... FROM record_write)
    SELECT * FROM record_write

A route declares that it may be answered this way with `@fast_create(...)` (the record kit does it
for record types whose service has `quick_values`); `FastCreates` finds the marked routes when the
app's middleware stack is built and compiles one statement per route.

Only a 201 is ever answered here, with the route's body and headers (`Location`, `ETag`, `Vary`,
`Cache-Control: no-store`). The statement writes nothing unless every rule holds; when it returns
no row, or the request is anything but a plain JSON create (an `Idempotency-Key`, a query string, an
API key, a cross-origin request, a body the service wants checked against stored data, a body that
does not validate), the request goes to the route unchanged, body and all, so that each error keeps
its one implementation in the routers. A unique index that refuses the row (`ON CONFLICT DO
NOTHING`) leaves the 409 to the route as well.

After the row is written the organization's cache generation is bumped and the outbox relay nudged,
as the routers do after commit.

Creates that arrive while the route's writers are busy are written together (`Batches`): one
statement for up to `MAX_BATCH` requests, their values passed as arrays, each row checked against
its own caller and answered to its own request. A batch costs PostgreSQL about half as much per row
(one commit, one executor start) and the API one round trip. A batch either writes every row it
may or nothing; when it fails, each of its requests goes to the routers — unless its connection was
lost while it ran (or it timed out): it may have committed, so those requests get a 503
`outcome_unknown` rather than a second write by the routers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
import orjson
import structlog
from fastapi.datastructures import DefaultPlaceholder
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, ValidationError
from sqlalchemy import (
    ARRAY,
    JSON,
    BigInteger,
    ColumnElement,
    Select,
    String,
    Table,
    all_,
    and_,
    any_,
    bindparam,
    exists,
    literal_column,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import insert as pg_insert
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crm.activities.service import snapshot_of
from crm.auth.repository import live_session
from crm.core import i18n
from crm.core.cache import bump_committed
from crm.core.errors import problem_response
from crm.core.metrics import FAST_CREATE_BATCH, FAST_CREATES
from crm.custom_fields.service import definition_cache
from crm.models import CustomField, Membership
from crm.organizations.permissions import CUSTOM_ROLE_PERMISSIONS, ROLE_PERMISSIONS
from crm.organizations.repository import member_access_query
from crm.outbox.events import record_events
from crm.outbox.service import kicker, snapshot_values
from crm.records.fast_read import (
    Batcher,
    FastReadError,
    FastReadPool,
    OutcomeUnknown,
    Renderer,
    asyncpg_sql,
    caller_of,
    send_record,
)
from crm.records.writes import Log, insert_values, log_ctes, plan_of, write_params

log = structlog.get_logger(__name__)

E = TypeVar("E", bound=Callable[..., Any])

_MARK = "__crm_fast_create__"
_PG_DIALECT: Any = postgresql.dialect  # untyped constructor
_PG: Any = _PG_DIALECT()
#: Media types of a JSON body the routers take as they are.
_JSON = (b"application/json", b"application/json; charset=utf-8")


@dataclass(frozen=True)
class FastCreate:
    """A record create declared for the fast path.

    `values(body)` gives the row's values from the validated body without any I/O (the service's
    `quick_values`), or None when the body needs the full route (custom fields to check, a phone that
    does not parse). `references` names the body's fields that point at records of the organization
    (`company_id` → `Company`) or at its members (`owner_id` → `Membership`); `logged` the fields the
    `created` activity lists."""

    model: Any
    entity_type: str
    permission: str
    create_model: type[BaseModel]
    read_model: type[BaseModel]
    values: Callable[[Any], dict[str, Any] | None]
    references: Mapping[str, Any]
    logged: Sequence[str]


def fast_create(declaration: FastCreate) -> Callable[[E], E]:
    """Marks a `POST /{records}` endpoint whose successful answers the fast path may give."""

    def mark(endpoint: E) -> E:
        setattr(endpoint, _MARK, declaration)
        return endpoint

    return mark


def _granted(permission: str, role: ColumnElement[Any], custom: ColumnElement[Any]) -> ColumnElement[bool]:
    """SQL for `permission in role_permissions(role, custom)` (`crm.organizations.permissions`)."""
    roles = ARRAY(String)
    builtin = [str(name) for name, granted in ROLE_PERMISSIONS.items() if permission in granted]
    condition = role == any_(bindparam("granting_roles", builtin, type_=roles))
    if permission in CUSTOM_ROLE_PERMISSIONS:
        own = and_(
            role != all_(bindparam("builtin_roles", [str(name) for name in ROLE_PERMISSIONS], type_=roles)),
            bindparam("permission_name", permission, type_=String) == any_(custom),
        )
        condition = or_(condition, own)
    return condition


class CreateRoute:
    """One marked create as the fast path serves it."""

    def __init__(self, path: str, create: FastCreate, response_class: type[JSONResponse] | None) -> None:
        self.path = path
        self.raw_path = path.encode()
        self.create = create
        self.served = FAST_CREATES.labels(path)
        self.renderer = Renderer(path, create.read_model, response_class)
        self.plan = plan_of(create.model)
        self.keys = [column.key for column in self.plan.columns if not column.generated]
        self.answer = ["id", *(name for name in create.read_model.model_fields if name != "id")]
        self.sql, self.params, self.constants, self._types = self._statement()
        self._position = {name: index for index, name in enumerate(self.params)}
        self.json_params = {
            name
            for name in self.params
            if name.startswith("row_") and isinstance(self.plan.by_key[name[4:]].column.type, JSON)
        } | {"activity_changes", "activity_payload", "event_data", "event_object"}
        self.batch_sql = self._batch_statement(self.plan.table)

    def _conditions(
        self,
        org: ColumnElement[Any],
        user: ColumnElement[Any],
        session: ColumnElement[Any],
        role: ColumnElement[Any],
        permissions: ColumnElement[Any],
        refs: Mapping[str, ColumnElement[Any]],
    ) -> list[ColumnElement[bool]]:
        """What must hold for the row to be written: a live session, a role granting the
        permission, no custom fields for the entity, references inside the organization."""
        conditions = [
            live_session(session, user).exists(),
            _granted(self.create.permission, role, permissions),
            ~exists().where(
                CustomField.organization_id == org, CustomField.entity == self.create.entity_type
            ),
        ]
        for field, model in self.create.references.items():
            ref = refs[field]
            if model is Membership:
                found = exists().where(Membership.organization_id == org, Membership.user_id == ref)
            else:
                found = exists().where(
                    model.id == ref, model.organization_id == org, model.deleted_at.is_(None)
                )
            conditions.append(or_(ref.is_(None), found))
        return conditions

    def _statement(self) -> tuple[str, tuple[str, ...], dict[str, Any], dict[str, Any]]:
        table: Table = self.plan.table
        org, user, session = (
            bindparam(name, type_=BigInteger) for name in ("organization_id", "user_id", "session_id")
        )
        access = member_access_query(org, user).subquery("access")
        row = {key: bindparam(f"row_{key}", type_=self.plan.by_key[key].column.type) for key in self.keys}
        refs = {field: row[field] for field in self.create.references}
        conditions = self._conditions(org, user, session, access.c.role, access.c.permissions, refs)
        values: Select[Any] = select(*row.values()).select_from(access).where(*conditions)
        record = (
            pg_insert(table)
            .from_select([table.c[key] for key in self.keys], values)
            .on_conflict_do_nothing()
            .returning(*(table.c[name] for name in self.answer), table.c.version.label("_version"))
            .cte("record_write")
        )
        statement = select(*record.c).add_cte(*log_ctes(record, events=True, with_object=True))
        sql, params, bound = asyncpg_sql(statement)
        types = {name: bind.type for name, bind in statement.compile(dialect=_PG).binds.items()}
        # Values fixed when the statement is built (the roles, the entity) go with every request.
        return sql, params, {name: value for name, value in bound.items() if value is not None}, types

    def _batch_statement(self, table: Table) -> str:
        """The same write for several requests at once: their values come as arrays (one element a
        request, `unnest … WITH ORDINALITY`), each row is checked against its own caller, and the
        rows come back with `ord`, the request's place in the batch. Ids are drawn before the
        insert, so that each row's activity and event find their request's values."""
        pg = _PG
        types = self._types
        columns = [name for name in self.params if name not in self.constants]
        arrays = {name for name in columns if isinstance(types[name], ARRAY)}
        self.batch_columns = tuple(columns)
        self.batch_arrays = frozenset(arrays)

        def sql_type(name: str) -> str:
            if name in self.json_params or name in arrays:
                return "JSONB"
            return str(types[name].compile(dialect=pg))

        def value(name: str) -> str:
            if name in arrays:
                array_type = types[name].compile(dialect=pg)
                return (
                    f"CASE WHEN b.{name} IS NULL THEN NULL ELSE "
                    f"CAST(ARRAY(SELECT jsonb_array_elements_text(b.{name})) AS {array_type}) END"
                )
            return f"b.{name}"

        def literal(clause: Any) -> str:
            return str(clause.compile(dialect=pg, compile_kwargs={"literal_binds": True}))

        org, user, session = (
            literal_column(f"b.{name}", BigInteger) for name in ("organization_id", "user_id", "session_id")
        )
        access = member_access_query(org, user)
        refs = {key: literal_column(f"b.row_{key}", BigInteger) for key in self.create.references}
        role = literal_column("access.role", String)
        permissions: ColumnElement[Any] = literal_column("access.permissions")
        conditions = self._conditions(org, user, session, role, permissions, refs)
        unnest = ", ".join(f"${position}::{sql_type(name)}[]" for position, name in enumerate(columns, 1))
        answer = ", ".join(f"{table.name}.{name}" for name in self.answer)
        entity, actor, at = "b.activity_entity_type", "b.activity_actor_id", "b.log_at"
        # Names and clauses from the tables and the rules compiled above; every value is bound.
        return f"""WITH batch AS MATERIALIZED (
    SELECT nextval(pg_get_serial_sequence('{table.name}', 'id')) AS id, b.*
    FROM unnest({unnest}) WITH ORDINALITY AS b({", ".join(columns)}, ord)),
record_write AS (
    INSERT INTO {table.name} (id, {", ".join(self.keys)})
    SELECT b.id, {", ".join(value(f"row_{key}") for key in self.keys)}
    FROM batch AS b JOIN LATERAL ({literal(access)}) AS access ON true
    WHERE {literal(and_(*conditions))}
    ORDER BY b.ord
    ON CONFLICT DO NOTHING
    RETURNING {answer}, {table.name}.version AS _version),
record_activity AS (
    INSERT INTO activity
        (organization_id, entity_type, action, actor_id, changes, payload, entity_id, created_at)
    SELECT b.activity_organization_id, {entity}, b.activity_action, {actor}, b.activity_changes,
        b.activity_payload, r.id, {at}
    FROM record_write AS r JOIN batch AS b ON b.id = r.id ORDER BY b.ord),
record_events AS (
    INSERT INTO outbox_event
        (organization_id, event_type, entity_type, entity_id, actor_id, payload, created_at)
    SELECT b.activity_organization_id, e.event_type, {entity}, r.id, {actor},
        b.event_data
            || jsonb_build_object('id', r.id, 'object', b.event_object || jsonb_build_object('id', r.id)),
        {at}
    FROM record_write AS r JOIN batch AS b ON b.id = r.id
    CROSS JOIN LATERAL jsonb_array_elements_text(b.event_types) WITH ORDINALITY AS e(event_type, position)
    ORDER BY b.ord, e.position)
SELECT r.*, b.ord FROM record_write AS r JOIN batch AS b ON b.id = r.id"""  # noqa: S608

    def batch_arguments(self, requests: Sequence[list[Any]]) -> list[list[Any]]:
        """The batch statement's arguments: one array a column, one element a request's value
        (arrays as JSON)."""
        position = self._position
        out = []
        for name in self.batch_columns:
            index = position[name]
            if name in self.batch_arrays:
                out.append([None if a[index] is None else orjson.dumps(a[index]).decode() for a in requests])
            else:
                out.append([a[index] for a in requests])
        return out

    def arguments(
        self, organization: int, user_id: int, session_id: int, data: BaseModel
    ) -> list[Any] | None:
        """The statement's arguments for a validated body, or None when it needs the full route."""
        values = self.create.values(data)
        if values is None:
            return None
        row = insert_values(self.plan, {**values, "organization_id": organization})
        document = snapshot_values(row)
        changes = snapshot_of(document, self.create.logged)
        entity = self.create.entity_type
        events = record_events(entity, "created", changes)
        entry = Log(
            activity={
                "organization_id": organization,
                "entity_type": entity,
                "action": "created",
                "actor_id": user_id,
                "changes": changes,
                "payload": {},
            },
            events=events,
            entity_type=entity,
            organization_id=organization,
            actor_id=user_id,
            changes=changes,  # made of the document: JSON already
            object=document,
        )
        params = {**self.constants, **write_params(row, entry)}
        if not events:  # the statement always writes the events it is given; none is an empty list
            params["event_types"] = []
            params["event_data"] = {"changes": {}}
            params["event_object"] = {}
        params.update(organization_id=organization, user_id=user_id, session_id=session_id)
        return [
            orjson.dumps(params[name], default=_json_default).decode()
            if name in self.json_params
            else params[name]
            for name in self.params
        ]


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError


def discover(routes: Sequence[BaseRoute]) -> list[CreateRoute]:
    """Every route of `routes` marked with `fast_create`, checked to qualify."""
    found = []
    for context in iter_route_contexts(routes):
        create = getattr(context.endpoint, _MARK, None)
        if not isinstance(create, FastCreate):
            continue
        path = str(context.path)

        def refuse(reason: str, path: str = path) -> FastReadError:
            return FastReadError(f"fast_create on {path}: {reason}")

        if set(context.methods or ()) != {"POST"} or context.status_code != 201:
            raise refuse("only a POST answering 201 can be a fast create")
        if "{" in path:
            raise refuse("the path must be the collection's, without parameters")
        if context.response_model is not create.read_model:
            raise refuse(f"the route answers {context.response_model!r}, not {create.read_model.__name__}")
        declared_class = context.response_class
        response_class = None
        if isinstance(declared_class, type) and issubclass(declared_class, JSONResponse):
            response_class = declared_class
        elif not isinstance(declared_class, DefaultPlaceholder):
            raise refuse("the route must answer JSON")
        table: Table = create.model.__table__
        for name in create.read_model.model_fields:
            if name not in table.c:
                raise refuse(f"{create.read_model.__name__}.{name} is not a column of {table.name}")
        found.append(CreateRoute(path, create, response_class))
    return found


#: Requests one batch statement writes at the most.
MAX_BATCH = 16
#: Batch statements of one route running at once. Fewer, fuller batches cost PostgreSQL less than
#: many small ones (a create's statement costs about 640 µs of its CPU alone, 320 µs in batches of four).
WRITERS = 4


class FastCreates:
    """ASGI middleware serving the marked creates' successful answers; everything else passes through
    (with the body it came with)."""

    def __init__(self, app: ASGIApp, *, routes: Sequence[BaseRoute], pool: FastReadPool) -> None:
        self.app = app
        self.pool = pool
        self.routes = {route.raw_path: route for route in discover(routes)}
        self.batches = {route.raw_path: self._batcher(route) for route in self.routes.values()}

    def _batcher(self, route: CreateRoute) -> Batcher:
        async def many(requests: list[list[Any]]) -> list[asyncpg.Record]:
            return await self.pool.fetch(route.batch_sql, *route.batch_arguments(requests))

        return Batcher(
            self.pool, route.sql, many, runners=WRITERS, size=MAX_BATCH, sizes=FAST_CREATE_BATCH, writes=True
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope["query_string"]:
            route = self.routes.get(scope["path"].encode())
            if route is not None and self.pool.enabled and _plain_json(scope):
                body, receive = await _buffered(receive)
                answered = body is not None and await self._answer(scope, receive, send, route, body)
                if answered:
                    return
        await self.app(scope, receive, send)

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, route: CreateRoute, body: bytes
    ) -> bool:
        caller = caller_of(scope)
        if caller is None:
            return False
        claims, organization = caller
        if definition_cache.defines(organization, route.create.entity_type):
            return False  # the statement would write nothing: custom fields are the routers' to check
        try:
            data = route.create.create_model.model_validate(orjson.loads(body))
        except (orjson.JSONDecodeError, ValidationError):
            return False
        arguments = route.arguments(organization, claims.user_id, claims.session_id, data)
        if arguments is None:
            return False
        try:
            row = await self.batches[route.raw_path].row(arguments)
        except OutcomeUnknown:
            await _outcome_unknown(scope, receive, send)
            return True
        if row is None:
            return False
        record = dict(row.items())
        version = record.pop("_version")
        record.pop("ord", None)
        app = scope["app"]
        await bump_committed(app.state.redis, organization)
        kicker.kick()
        structlog.contextvars.bind_contextvars(user_id=claims.user_id, organization_id=organization)
        scope["route"] = route
        route.served.inc()
        location = f"{route.path}/{record['id']}".encode()
        await send_record(
            send, 201, route.renderer, route.renderer.render(record), version, (b"location", location)
        )
        return True


async def _outcome_unknown(scope: Scope, receive: Receive, send: Send) -> None:
    """503: the connection was lost while the record was written, so it may exist. The routers
    would write it again (a duplicate, or a 409 for a taken e-mail); the client decides."""
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    response = problem_response(
        503,
        "outcome_unknown",
        "The connection to the database was lost while the record was being written: it may have "
        "been created. Look for it before sending the create again, or send it with an "
        "Idempotency-Key.",
        headers={"Retry-After": "1"},
        language=i18n.negotiate(headers.get("accept-language")),
    )
    await response(scope, receive, send)


def _plain_json(scope: Scope) -> bool:
    """A JSON body and no `Idempotency-Key` (its claim and replay live in the routers)."""
    content_type = None
    for name, value in scope["headers"]:
        if name == b"idempotency-key":
            return False
        if name == b"content-type":
            if content_type is not None:
                return False
            content_type = value.lower()
    return content_type in _JSON


async def _buffered(receive: Receive) -> tuple[bytes | None, Receive]:
    """The whole request body, and a `receive` that gives it again to whoever reads next."""
    chunks: list[bytes] = []
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break

    async def replay() -> Message:
        if messages:
            return messages.pop(0)
        return await receive()

    complete = messages[-1]["type"] == "http.request"
    return (b"".join(chunks) if complete else None), replay
