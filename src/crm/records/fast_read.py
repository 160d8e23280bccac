"""Fast reads: a record's `GET .../{id}` answered without the framework's per-request machinery.

A successful read of one record needs three facts: a valid access token, the caller's access in the
organization and one row. A route declares that it may be answered this way with `@fast_read(model,
permission, read_model)`; when the app's middleware stack is built, `FastReads` finds every marked
route among the app's routes, takes its path template from the route itself and compiles one
statement per route. That statement reads the row together with the caller's role and the liveness
of the token's session, and is built from the same Core queries the repositories use
(`live_session`, `member_access_query`), so the rules live in one place. The token check is cached;
the statement runs as a prepared statement on a small asyncpg pool of its own.

Only a 200 is ever answered here, with the body the route would have produced: the row is validated
and serialized by the route's own response model (decimals, dates, nested JSON, computed fields),
and the headers are the route's (`ETag`, `Vary: Origin`, `Cache-Control: no-store`). Every other
request goes to the application unchanged: another route, a query string, an API key, a
cross-origin request (it needs the CORS layer), a revoked session, not a member, a missing
permission, a missing or deleted row, PostgreSQL away, dependency overrides (tests). So each error
keeps its one implementation in the routers (the tests compare both paths byte for byte).

A route qualifies when its answer can be produced from the row alone: every field of its response
model is a column of the table (docs/platform.md, "The request path and fast reads").
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from types import UnionType
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import asyncpg
import orjson
import structlog
from fastapi.datastructures import DefaultPlaceholder
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, TypeAdapter
from sqlalchemy import ARRAY, BigInteger, Table, TypeDecorator, bindparam, func, select, true
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from crm.auth.repository import live_session
from crm.config import Settings
from crm.core.concurrency import etag
from crm.core.metrics import FAST_READ_BATCH, HOT_READS
from crm.core.schemas import BIGINT_MAX
from crm.core.security import InvalidToken, TokenClaims, decode_token
from crm.organizations.permissions import role_permissions
from crm.organizations.repository import member_access_query

log = structlog.get_logger(__name__)

E = TypeVar("E", bound=Callable[..., Any])

_MARK = "__crm_fast_read__"
#: Reads of one route sent at once, and requests one of them reads at the most (see `Batcher`).
READERS = 4
MAX_READ_BATCH = 16
_PARAMETER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: Columns the statement adds to the record's own; popped before the record is serialized.
_EXTRA = ("_version", "_role", "_permissions")


class FastReadError(Exception):
    """A route declares a fast read it cannot have (raised when the app is built)."""


@dataclass(frozen=True)
class FastRead:
    """A record read declared for the fast path: the table's model, the permission the read needs
    and the route's response model (each of its fields a column of the table)."""

    model: Any
    permission: str
    read_model: type[BaseModel]


def fast_read(model: Any, permission: str, read_model: type[BaseModel]) -> Callable[[E], E]:
    """Marks a `GET .../{id}` endpoint whose successful answers the fast path may give. The endpoint
    stays the contract and serves every other case."""
    declaration = FastRead(model, permission, read_model)

    def mark(endpoint: E) -> E:
        setattr(endpoint, _MARK, declaration)
        return endpoint

    return mark


def declared(endpoint: Any) -> FastRead | None:
    found = getattr(endpoint, _MARK, None)
    return found if isinstance(found, FastRead) else None


class Renderer:
    """Writes a row as a route writes its answer: validated and serialized by the route's response
    model, written by the route's response class (the framework's own JSON when it has none)."""

    def __init__(
        self, path: str, read_model: type[BaseModel], response_class: type[JSONResponse] | None
    ) -> None:
        self.adapter: TypeAdapter[Any] = TypeAdapter(read_model)
        self.response_class = response_class
        self.content_type = b"application/json"
        #: The response class writes standard JSON (`json.dumps`), which orjson writes byte for byte
        #: alike for every document without floats (they differ in exponents: `1e-07` / `1e-7`).
        self.standard_json = False
        if response_class is not None:
            headers = dict(response_class(None).raw_headers)
            if set(headers) != {b"content-length", b"content-type"}:
                raise FastReadError(f"{path}: {response_class.__name__} adds headers")
            self.content_type = headers[b"content-type"]
            self.standard_json = response_class.render is JSONResponse.render
        #: Fields whose JSON may hold floats (free-form JSON, numbers): checked before orjson writes.
        self.open_fields = [
            name for name, info in read_model.model_fields.items() if not _float_free_type(info.annotation)
        ] + [
            name
            for name, computed in read_model.model_computed_fields.items()
            if not _float_free_type(computed.return_type)
        ]

    def render(self, record: dict[str, Any]) -> bytes:
        value = self.adapter.validate_python(record, from_attributes=True)
        if self.response_class is None:  # the framework writes the model's JSON itself
            return self.adapter.dump_json(value, by_alias=True)
        content = self.adapter.dump_python(value, mode="json", by_alias=True)
        if self.standard_json:
            for name in self.open_fields:
                if _holds_float(content[name]):
                    break
            else:
                try:
                    return orjson.dumps(content)
                except TypeError:  # an integer beyond 64 bits: the response class writes it
                    pass
        return bytes(self.response_class(content).body)


class FastRoute:
    """One marked route as the fast path serves it: its path template (`path_format`, also the
    metrics label), the statement and the route's own way of writing its answer."""

    def __init__(self, path: str, read: FastRead, response_class: type[JSONResponse] | None) -> None:
        self.path_format = path
        self.permission = read.permission
        self.served = HOT_READS.labels(path)
        prefix, _, _ = path.rpartition("/")
        self.pattern = re.compile(re.escape(prefix) + r"/([1-9][0-9]{0,18})")
        self.sql, self.params = _statement(read.model.__table__, list(read.read_model.model_fields))
        self.batch_sql = _batch_statement(read.model.__table__, list(read.read_model.model_fields))
        self.renderer = Renderer(path, read.read_model, response_class)


_FLOAT_FREE = (str, int, bool, type(None), datetime, date, Decimal)


def _float_free_type(annotation: Any) -> bool:
    """Whether a field of this type is written without floats (money is written as a string)."""
    if annotation in _FLOAT_FREE:
        return True
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _float_free_type(args[0])
    if origin in (Union, UnionType, list, tuple, set, frozenset):
        return all(_float_free_type(arg) for arg in args if arg is not Ellipsis)
    return False


def _holds_float(value: Any) -> bool:
    kind = type(value)
    if kind is float:
        return True
    if kind is dict:
        return any(_holds_float(item) for item in value.values())
    if kind is list:
        return any(_holds_float(item) for item in value)
    return False


def _statement(record: Table, columns: list[str]) -> tuple[str, tuple[str, ...]]:
    record_id, org, user, session = (
        bindparam(name, type_=BigInteger)
        for name in ("record_id", "organization_id", "user_id", "session_id")
    )
    access = member_access_query(org, user).subquery()
    conditions = [
        record.c.id == record_id,
        record.c.organization_id == org,
        live_session(session, user).exists(),
    ]
    if "deleted_at" in record.c:
        conditions.append(record.c.deleted_at.is_(None))
    statement = (
        select(
            *(record.c[name] for name in columns),
            record.c.version.label("_version"),
            access.c.role.label("_role"),
            access.c.permissions.label("_permissions"),
        )
        .join_from(record, access, true())
        .where(*conditions)
    )
    sql, params, _ = asyncpg_sql(statement)
    return sql, params


#: The one-row statement's parameters, in the order the batch statement takes them as arrays.
BATCH_PARAMS = ("record_id", "organization_id", "user_id", "session_id")


def _batch_statement(record: Table, columns: list[str]) -> str:
    """The same read for several requests: one array a parameter (`unnest … WITH ORDINALITY`), each
    row checked against its own caller, returned with `ord`, its request's place."""
    arrays = [bindparam(f"{name}s", type_=ARRAY(BigInteger)) for name in BATCH_PARAMS]
    batch = func.unnest(*arrays).table_valued(*BATCH_PARAMS, with_ordinality="ord").render_derived(name="b")
    access = member_access_query(batch.c.organization_id, batch.c.user_id).lateral("access")
    conditions = [
        record.c.id == batch.c.record_id,
        record.c.organization_id == batch.c.organization_id,
        live_session(batch.c.session_id, batch.c.user_id).exists(),
    ]
    if "deleted_at" in record.c:
        conditions.append(record.c.deleted_at.is_(None))
    statement = (
        select(
            *(record.c[name] for name in columns),
            record.c.version.label("_version"),
            access.c.role.label("_role"),
            access.c.permissions.label("_permissions"),
            batch.c.ord,
        )
        .select_from(batch)
        .join(record, true())
        .join(access, true())
        .where(*conditions)
    )
    sql, params, _ = asyncpg_sql(statement)
    assert params == tuple(f"{name}s" for name in BATCH_PARAMS), params
    return sql


_ASYNCPG: Any = asyncpg_dialect  # untyped constructor


def asyncpg_sql(statement: ClauseElement) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    """A Core statement as asyncpg runs it: its SQL (`$1`, `$2`, ...), the names of its parameters in
    that order, and the values bound when it was built."""
    compiled = statement.compile(dialect=_ASYNCPG())
    assert isinstance(compiled, SQLCompiler)
    return str(compiled), tuple(compiled.positiontup or ()), dict(compiled.params)


def discover(routes: Sequence[BaseRoute]) -> list[FastRoute]:
    """Every route of `routes` (included routers walked) marked with `fast_read`, checked to qualify.
    Raises `FastReadError` for a marked route the fast path could not answer exactly as it does."""
    contexts = list(iter_route_contexts(routes))
    found = []
    for position, context in enumerate(contexts):
        read = declared(context.endpoint)
        if read is None:
            continue
        path = str(context.path)
        response_class = _check(context, path, read)
        _check_wins(contexts[:position], path)
        found.append(FastRoute(path, read, response_class))
    return found


def _check(route: Any, path: str, read: FastRead) -> type[JSONResponse] | None:
    """The route's response class (None: the framework's own JSON) once the route qualifies."""

    def refuse(reason: str) -> FastReadError:
        return FastReadError(f"fast_read on {path}: {reason}")

    if set(route.methods or ()) != {"GET"}:
        raise refuse("only a GET can be a fast read")
    parameters = _PARAMETER.findall(path)
    if len(parameters) != 1 or not path.endswith("/{" + parameters[0] + "}"):
        raise refuse("the path must end in its one parameter, the record's id")
    if route.response_model is not read.read_model:
        raise refuse(f"the route answers {route.response_model!r}, not {read.read_model.__name__}")
    declared_class = route.response_class
    response_class: type[JSONResponse] | None = None
    if isinstance(declared_class, type) and issubclass(declared_class, JSONResponse):
        response_class = declared_class
    elif not isinstance(declared_class, DefaultPlaceholder):
        raise refuse("the route must answer JSON")
    if route.status_code not in (None, 200):
        raise refuse("the route must answer 200")
    if (
        route.response_model_include is not None
        or route.response_model_exclude is not None
        or not route.response_model_by_alias
        or route.response_model_exclude_unset
        or route.response_model_exclude_defaults
        or route.response_model_exclude_none
    ):
        raise refuse("the response model must be serialized whole")
    table: Table = read.model.__table__
    for column in ("id", "organization_id", "version"):
        if column not in table.c:
            raise refuse(f"{table.name} has no {column} column")
    for name, field in read.read_model.model_fields.items():
        if name not in table.c:
            raise refuse(f"{read.read_model.__name__}.{name} is not a column of {table.name}")
        if field.alias or field.validation_alias or field.serialization_alias:
            raise refuse(f"{read.read_model.__name__}.{name} has an alias")
        if isinstance(table.c[name].type, TypeDecorator):
            raise refuse(f"{table.name}.{name} converts its values in Python")
    return response_class


def _check_wins(earlier: Sequence[Any], path: str) -> None:
    """No route before the marked one takes a GET of its path (the router picks the first match)."""
    sample = path.rpartition("/")[0] + "/1"
    for route in earlier:
        regex = getattr(route, "path_regex", None)
        methods = route.methods
        if regex is not None and regex.match(sample) and (methods is None or "GET" in methods):
            raise FastReadError(f"fast_read on {path}: {route.path} is matched first")


def _id(raw: bytes | None) -> int | None:
    """A positive BIGINT from a header or path segment, else None."""
    if raw is None or not raw.isdigit() or raw.startswith(b"0") or len(raw) > 19:
        return None
    value = int(raw)
    return value if value <= BIGINT_MAX else None


class FastReadPool:
    """The fast paths' own few connections, opened on first use and closed with the app.

    Leaner than `asyncpg.Pool` (whose acquire and release cost about twice the statement's own
    client time): an idle connection is taken from a stack and handed back, or straight to a waiting
    request. A connection that breaks (PostgreSQL restarted, the backend terminated) is dropped, and
    the next request opens a new one. When a connection cannot be opened the fast paths step aside
    for a second (their requests go to the routers at once)."""

    backoff_seconds = 1.0

    def __init__(self, settings: Settings) -> None:
        self.dsn = settings.sync_database_url
        self.size = settings.hot_read_pool_size
        self.timeout = settings.database_connect_timeout
        # Through PgBouncer's transaction pooling each statement is prepared unnamed, every time.
        self.statement_cache_size = 0 if settings.database_pgbouncer else 100
        self.server_settings = {"application_name": "crm-hot", "timezone": "UTC"}
        if not settings.database_pgbouncer:
            # The fast statements are planned once: their plans do not depend on the values (a
            # primary key, the caller's ids), and a create's statement plans in about as long as it
            # runs. (PgBouncer refuses startup parameters it does not know.)
            self.server_settings["plan_cache_mode"] = "force_generic_plan"
        #: The fast routes' batchers sending their statements through this pool.
        self.batchers: list[Batcher] = []
        self._idle: list[asyncpg.Connection] = []
        self._waiters: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        self._open = 0
        self._down_until = 0.0

    @property
    def enabled(self) -> bool:
        return self.size > 0 and time.monotonic() >= self._down_until

    async def row(self, sql: str, *args: Any) -> asyncpg.Record | None:
        """The row of one statement (autocommit), or None when there is none or PostgreSQL cannot
        answer it (the request then goes to the routers)."""
        try:
            return await self.fetchrow(sql, *args)
        except UNAVAILABLE as exc:
            log.warning("fast_path_unavailable", error=type(exc).__name__)
            return None

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        """Run one statement on a connection of the pool (autocommit): its first row."""
        conn = await self._acquire()
        try:
            return await conn.fetchrow(sql, *args)
        except BaseException as exc:
            self._after_error(conn, exc)
            raise
        finally:
            self._release(conn)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Run one statement on a connection of the pool (autocommit): its rows."""
        conn = await self._acquire()
        try:
            return list(await conn.fetch(sql, *args))
        except BaseException as exc:
            self._after_error(conn, exc)
            raise
        finally:
            self._release(conn)

    @staticmethod
    def _after_error(conn: asyncpg.Connection, exc: BaseException) -> None:
        if not _statement_error(exc):
            conn.terminate()  # its state is unknown: the next request opens a new one

    async def _acquire(self) -> asyncpg.Connection:
        if self._idle:
            return self._idle.pop()
        if self._open >= self.size:
            waiting: asyncio.Future[asyncpg.Connection | None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiting)
            try:
                handed = await waiting
            except asyncio.CancelledError:
                if waiting.done() and not waiting.cancelled() and waiting.result() is not None:
                    self._release(waiting.result())
                elif waiting.done() and not waiting.cancelled():
                    self._open -= 1  # the slot handed over is given up
                raise
            if handed is not None:
                return handed
            self._open -= 1  # a broken connection's slot, handed over to open a new one
        self._open += 1
        try:
            return await self._connect()
        except BaseException:
            self._open -= 1
            self._down_until = time.monotonic() + self.backoff_seconds
            raise

    async def _connect(self) -> asyncpg.Connection:
        conn = await asyncpg.connect(
            self.dsn,
            timeout=self.timeout,
            command_timeout=60,
            statement_cache_size=self.statement_cache_size,
            server_settings=self.server_settings,
        )
        await _init_connection(conn)
        return conn

    def _release(self, conn: asyncpg.Connection) -> None:
        handed: asyncpg.Connection | None = conn
        if conn.is_closed():
            handed = None  # the next one in line opens a new connection in its place
        while self._waiters:
            waiting = self._waiters.popleft()
            if not waiting.done():
                waiting.set_result(handed)
                return
        if handed is None:
            self._open -= 1
        else:
            self._idle.append(handed)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        self._open -= len(idle)
        for conn in idle:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)


def _statement_error(exc: BaseException) -> bool:
    """An error of the statement itself, after which the connection is fine (not one of a lost
    connection, class 08, or of the server going away, class 57)."""
    return isinstance(exc, asyncpg.PostgresError) and not str(exc.sqlstate or "").startswith(("08", "57"))


#: What a fast path's statement may raise when PostgreSQL cannot answer it; the routers answer then.
UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)
#: A statement that was sent and then lost (its connection closed in the middle, or it timed out):
#: it may have committed. (A connection found closed before sending raises `InterfaceError`.)
OUTCOME_UNKNOWN = (asyncpg.ConnectionDoesNotExistError, TimeoutError)


class OutcomeUnknown(Exception):
    """A write whose statement may or may not have committed."""


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=lambda v: v, decoder=orjson.loads, schema="pg_catalog")


class FastReads:
    """ASGI middleware serving the marked routes' successful reads; everything else passes through.

    Built with the app's middleware stack (on its first request, when every router is included), it
    finds the marked routes among the app's `routes`."""

    def __init__(self, app: ASGIApp, *, routes: Sequence[BaseRoute], pool: FastReadPool) -> None:
        self.app = app
        self.pool = pool
        self.routes = discover(routes)
        self.batchers = {route.path_format: self._batcher(route) for route in self.routes}

    def _batcher(self, route: FastRoute) -> Batcher:
        order = [route.params.index(name) for name in BATCH_PARAMS]

        async def many(requests: list[list[Any]]) -> list[asyncpg.Record]:
            arrays = [[request[index] for request in requests] for index in order]
            return await self.pool.fetch(route.batch_sql, *arrays)

        return Batcher(
            self.pool, route.sql, many, runners=READERS, size=MAX_READ_BATCH, sizes=FAST_READ_BATCH
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and not scope["query_string"]
            and self.pool.enabled
        ):
            for route in self.routes:
                match = route.pattern.fullmatch(scope["path"])
                if match is not None:
                    answer = await self._answer(scope, route, int(match.group(1)))
                    if answer is not None:
                        scope["route"] = route  # the access log and metrics label it like the router
                        route.served.inc()
                        await send_record(send, 200, route.renderer, *answer)
                        return
                    break
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, route: FastRoute, record_id: int) -> tuple[bytes, int] | None:
        caller = caller_of(scope)
        if caller is None or record_id > BIGINT_MAX:
            return None
        claims, organization = caller
        values = {
            "record_id": record_id,
            "organization_id": organization,
            "user_id": claims.user_id,
            "session_id": claims.session_id,
        }
        row = await self.batchers[route.path_format].row([values[name] for name in route.params])
        if row is None:
            return None
        record = dict(row.items())
        version, role, custom = (record.pop(name) for name in _EXTRA)
        record.pop("ord", None)
        if route.permission not in role_permissions(role, custom):
            return None
        structlog.contextvars.bind_contextvars(user_id=claims.user_id, organization_id=organization)
        return route.renderer.render(record), version


Pending = tuple[list[Any], "asyncio.Future[asyncpg.Record | None]"]


class Batcher:
    """Requests of one fast route sent to PostgreSQL together: a request joins the pending ones and
    a runner takes up to `size` of them into one statement (one round trip, one executor start, for
    a write one commit). With a runner free, a request goes at once, alone, by the one-row
    statement; batches form only while the runners are busy, so they add no latency when the API is
    quiet.

    `many(requests)` runs the batch statement and returns its rows, each with `ord`, the request's
    place (from 1). When a statement fails every request of it gets None, and the routers answer it
    (a batch statement writes all its rows or none). For a batcher that `writes`, a statement whose
    connection was lost while it ran, or which timed out, may have committed: its requests get
    `OutcomeUnknown` instead, since the routers would write them a second time."""

    def __init__(
        self,
        pool: FastReadPool,
        sql: str,
        many: Callable[[list[list[Any]]], Awaitable[list[asyncpg.Record]]],
        *,
        runners: int,
        size: int,
        sizes: Any,
        writes: bool = False,
    ) -> None:
        self.pool, self.sql, self.many = pool, sql, many
        self.runners, self.size, self.sizes, self.writes = runners, size, sizes, writes
        self.pending: list[Pending] = []
        self.running = 0
        self._tasks: set[asyncio.Task[None]] = set()
        pool.batchers.append(self)

    async def row(self, arguments: list[Any]) -> asyncpg.Record | None:
        """The row of the statement for these arguments, or None when the router is to answer
        (raises `OutcomeUnknown`, see the class docstring)."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[asyncpg.Record | None] = loop.create_future()
        self.pending.append((arguments, answer))
        if self.running < min(self.runners, self.pool.size):
            self.running += 1
            task = loop.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await answer

    async def _drain(self) -> None:
        try:
            while self.pending:
                batch = self.pending[: self.size]
                del self.pending[: self.size]
                await self._run(batch)
        finally:
            self.running -= 1

    async def _run(self, batch: list[Pending]) -> None:
        rows: list[asyncpg.Record | None] = [None] * len(batch)
        try:
            if len(batch) == 1:
                rows[0] = await self.pool.fetchrow(self.sql, *batch[0][0])
            else:
                for row in await self.many([request for request, _ in batch]):
                    rows[row["ord"] - 1] = row
            self.sizes.observe(len(batch))
        except Exception as exc:  # nothing was written: each request goes to the router
            log.warning("fast_path_batch_failed", error=type(exc).__name__, size=len(batch))
            if self.writes and isinstance(exc, OUTCOME_UNKNOWN):
                for _, answer in batch:
                    if not answer.done():
                        answer.set_exception(OutcomeUnknown())
                return
            if not isinstance(exc, UNAVAILABLE):
                log.warning("fast_path_batch_error", exc_info=True)
        for (_, answer), row in zip(batch, rows, strict=True):
            if not answer.done():
                answer.set_result(row)


def caller_of(scope: Scope) -> tuple[TokenClaims, int] | None:
    """The access token's claims and the organization of a request the fast paths may answer: one
    bearer token, one `X-Organization-ID`, no API key, no `Origin` (cross-origin answers need the CORS
    layer), and no dependency overrides (tests). None leaves the request to the routers."""
    app = scope["app"]
    if app.dependency_overrides:
        return None
    token = organization = None
    seen: set[bytes] = set()
    for name, value in scope["headers"]:
        if name in (b"x-api-key", b"origin"):
            return None
        if name not in (b"authorization", b"x-organization-id"):
            continue
        if name in seen:  # repeated: the routers decide which one counts
            return None
        seen.add(name)
        if name == b"authorization":
            scheme, _, token_value = value.partition(b" ")
            if scheme.lower() == b"bearer":
                token = token_value.strip().decode("latin-1")
        else:
            organization = _id(value)
    if not token or organization is None:
        return None
    try:
        return decode_token(app.state.settings, token, "access"), organization
    except InvalidToken:
        return None


async def send_record(
    send: Send, status: int, renderer: Renderer, body: bytes, version: int, *extra: tuple[bytes, bytes]
) -> None:
    """A record's answer with the headers its route gives it."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-length", str(len(body)).encode()),
                (b"content-type", renderer.content_type),
                *extra,
                (b"etag", etag(version).encode()),
                (b"vary", b"Origin"),  # as the CORS layer marks every answer to a request without Origin
                (b"cache-control", b"no-store"),  # a record: personal data, never kept by a cache
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
