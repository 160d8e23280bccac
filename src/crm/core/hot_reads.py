"""Hot reads: the busiest record `GET`s answered without the framework's per-request machinery.

A successful `GET /api/v1/contacts/{id}` needs three facts: a valid access token, the caller's
access in the organization and one row. `HotReads` is an ASGI layer that answers exactly that case
with one token check (cached) and one prepared asyncpg statement, which reads the row together
with the caller's role and the liveness of the token's session. That statement is built from the
same Core queries the repositories use (`live_session`, `member_access_query`), so the rules live in
one place.

Every other request goes to the application unchanged: another route, a query string, an API key,
a cross-origin request (it needs the CORS layer), a revoked session, not a member, a missing
permission, a missing or deleted row, PostgreSQL away, dependency overrides (tests). So each error
keeps its one implementation in the routers, and the hot path only ever answers 200 with the body
the router would have produced (the tests compare both byte for byte).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
import structlog
from sqlalchemy import BigInteger, bindparam, select, true
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from starlette.types import ASGIApp, Receive, Scope, Send

from crm.auth.repository import live_session
from crm.config import Settings
from crm.core.concurrency import etag
from crm.core.metrics import HOT_READS
from crm.core.schemas import BIGINT_MAX
from crm.core.security import InvalidToken, decode_token
from crm.organizations.permissions import role_permissions
from crm.organizations.repository import member_access_query

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class HotRoute:
    """One record read: `path_format` (also the metrics label), the permission it needs, the record's
    model and the columns it returns, in the order of the router's response model."""

    path_format: str
    model: Any
    permission: str
    columns: Sequence[str]
    pattern: re.Pattern[str] = field(init=False)
    sql: str = field(init=False)
    params: tuple[str, ...] = field(init=False)
    served: Any = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "served", HOT_READS.labels(self.path_format))
        prefix, _, _ = self.path_format.partition("{")
        object.__setattr__(self, "pattern", re.compile(re.escape(prefix) + r"([1-9][0-9]{0,18})"))
        record = self.model.__table__
        record_id, org, user, session = (
            bindparam(name, type_=BigInteger)
            for name in ("record_id", "organization_id", "user_id", "session_id")
        )
        access = member_access_query(org, user).subquery()
        statement = (
            select(
                *(record.c[name] for name in self.columns),
                access.c.role.label("_role"),
                access.c.permissions.label("_permissions"),
            )
            .join_from(record, access, true())
            .where(
                record.c.id == record_id,
                record.c.organization_id == org,
                record.c.deleted_at.is_(None),
                live_session(session, user).exists(),
            )
        )
        compiled = statement.compile(dialect=asyncpg_dialect())  # type: ignore[no-untyped-call]
        object.__setattr__(self, "sql", str(compiled))
        object.__setattr__(self, "params", tuple(compiled.positiontup or ()))


def _id(raw: bytes | None) -> int | None:
    """A positive BIGINT from a header or path segment, else None."""
    if raw is None or not raw.isdigit() or raw.startswith(b"0") or len(raw) > 19:
        return None
    value = int(raw)
    return value if value <= BIGINT_MAX else None


class HotReadPool:
    """The hot path's own small asyncpg pool, opened on first use and closed with the app."""

    def __init__(self, settings: Settings) -> None:
        self.dsn = settings.sync_database_url
        self.size = settings.hot_read_pool_size
        self.timeout = settings.database_connect_timeout
        # Through PgBouncer's transaction pooling each statement is prepared unnamed, every time.
        self.statement_cache_size = 0 if settings.database_pgbouncer else 100
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        return self.size > 0

    async def get(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self.dsn,
                        min_size=1,
                        max_size=self.size,
                        timeout=self.timeout,
                        command_timeout=60,
                        init=_init_connection,
                        statement_cache_size=self.statement_cache_size,
                        reset=_keep,
                        server_settings={"application_name": "crm-hot", "timezone": "UTC"},
                    )
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), 5)


async def _keep(conn: asyncpg.Connection) -> None:
    """Nothing to reset on release: the hot path only runs single read statements, which leave no
    session state behind (the default reset would cost a round trip per request)."""


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=lambda v: v, decoder=orjson.loads, schema="pg_catalog")


class HotReads:
    """ASGI middleware serving the `routes`' successful reads; everything else passes through."""

    def __init__(self, app: ASGIApp, *, routes: Sequence[HotRoute], pool: HotReadPool) -> None:
        self.app = app
        self.routes = routes
        self.pool = pool

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
                    body = await self._answer(scope, route, int(match.group(1)))
                    if body is not None:
                        scope["route"] = route  # the access log and metrics label it like the router
                        route.served.inc()
                        await _send_json(send, *body)
                        return
                    break
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, route: HotRoute, record_id: int) -> tuple[bytes, int] | None:
        app = scope["app"]
        if app.dependency_overrides:
            return None
        token = organization = None
        seen: set[bytes] = set()
        for name, value in scope["headers"]:
            if name in (b"x-api-key", b"origin"):  # cross-origin answers need the CORS layer
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
        if not token or organization is None or record_id > BIGINT_MAX:
            return None
        try:
            claims = decode_token(app.state.settings, token, "access")
        except InvalidToken:
            return None
        values = {
            "record_id": record_id,
            "organization_id": organization,
            "user_id": claims.user_id,
            "session_id": claims.session_id,
        }
        try:
            pool = await self.pool.get()
            row = await pool.fetchrow(route.sql, *(values[name] for name in route.params))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.warning("hot_read_unavailable", error=type(exc).__name__)
            return None
        if row is None:
            return None
        record = dict(row.items())
        if route.permission not in role_permissions(record.pop("_role"), record.pop("_permissions")):
            return None
        structlog.contextvars.bind_contextvars(user_id=claims.user_id, organization_id=organization)
        return orjson.dumps(record, option=orjson.OPT_UTC_Z), record["version"]


async def _send_json(send: Send, body: bytes, version: int) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-length", str(len(body)).encode()),
                (b"content-type", b"application/json"),
                (b"etag", etag(version).encode()),
                (b"vary", b"Origin"),  # as the CORS layer marks every answer to a request without Origin
                (b"cache-control", b"no-store"),  # a record: personal data, never kept by a cache
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def columns_of(model: Any) -> list[str]:
    """The response model's field names, in order (they are the table's column names)."""
    return list(model.model_fields)
