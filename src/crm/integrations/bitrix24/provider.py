"""The Bitrix24 provider: companies (with requisites), contacts and deals of one deal pipeline.

Lists are read in `ID` order, keyset by ID: each request re-anchors on the last id stored (`>ID`), and
the `batch` method fetches up to 50 pages of 50 (2 500 rows) in one HTTP request. Incremental runs filter
`>=DATE_MODIFY` from the server time (`time.date_start`, the portal's own offset) at the start of the
previous run, less `overlap_seconds`. The cursor is JSON:

- mid-entity `{"v": 1, "since": <ISO|null>, "anchor": <last id>, "mark": <this run's start>}`;
- last page `{"v": 1, "since": <this run's start>}`.

Inbound events (`ONCRM*`) name single records: the webhook puts their ids into a Redis set per
integration and entity, and the next job of that entity reads those records first with `crm.*.get`
(in batches); a record the portal no longer has is soft-deleted locally. A full run also soft-deletes
rows it did not see (`snapshot_entities`, set per run).

Deals go to one pipeline of ours: the one configured (`pipeline_id` with a `stage_map` of Bitrix24
stage ids to our stage keys), or one created on the first sync from the portal's stages
(`crm.status.list`) and remembered in the integration's state; won/lost follow the stage semantics
(`S`/`F`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from crm.config import get_settings
from crm.integrations.base import (
    BadRecord,
    ConnectionResult,
    Page,
    ProviderContext,
    ProviderError,
    SyncRecord,
)
from crm.integrations.bitrix24 import mapping
from crm.integrations.bitrix24.client import MAX_BATCH, PAGE_SIZE, Bitrix24Client
from crm.integrations.context import ClientsByContext, provider_settings
from crm.integrations.pending import pending_key
from crm.models import Pipeline, PipelineStage

log = structlog.get_logger(__name__)

Entity = Literal["companies", "contacts", "deals"]
ENTITIES: tuple[str, ...] = ("companies", "contacts", "deals")
TARGETS = {"companies": "company", "contacts": "contact", "deals": "deal"}
METHODS = {"companies": "crm.company", "contacts": "crm.contact", "deals": "crm.deal"}
SELECT = {
    "companies": ["*", "PHONE", "EMAIL", "WEB"],
    "contacts": ["*", "PHONE", "EMAIL"],
    "deals": ["*"],
}
#: How many records named by events one job reads at most per entity (the rest wait for the next).
MAX_PENDING = 5000


class Bitrix24Credentials(BaseModel):
    """The inbound webhook (`https://<portal>/rest/<webhook_user_id>/<webhook_secret>/`) and the
    application token the portal's outbound events carry."""

    model_config = ConfigDict(extra="forbid")

    webhook_user_id: str = Field(min_length=1, max_length=20, pattern=r"^\d+$")
    webhook_secret: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_-]+$")
    application_token: str | None = Field(default=None, min_length=1, max_length=200)


class Bitrix24Settings(BaseModel):
    entities: list[Entity] | None = Field(default=None, description="Entities to sync (default: all)")
    category_id: int = Field(default=0, ge=0, description="The deal pipeline (category) of the portal")
    pipeline_id: int | None = Field(
        default=None, ge=1, description="Our pipeline for the deals (default: one created on the first sync)"
    )
    stage_map: dict[str, str] = Field(
        default_factory=dict, description="Bitrix24 stage id → our stage key (with `pipeline_id`)"
    )
    overlap_seconds: int = Field(default=120, ge=0, le=86400)
    rate_per_second: float = Field(default=2.0, gt=0, le=50, description="The portal's drain rate")
    burst: int = Field(default=40, ge=1, le=250, description="Requests sent at once before pacing")
    use_batch: bool = Field(default=True, description="Fetch up to 50 pages per request with `batch`")
    retry_attempts: int = Field(default=5, ge=1, le=10)
    backoff_seconds: float = Field(default=1.0, ge=0.05, le=60)
    limit_waits: int = Field(default=10, ge=1, le=50)
    timeout_seconds: float = Field(default=60.0, gt=0, le=600)


@dataclass(slots=True)
class _Position:
    since: str | None = None
    anchor: int = 0
    mark: str | None = None

    @classmethod
    def load(cls, cursor: str | None) -> _Position:
        if not cursor:
            return cls()
        try:
            data = json.loads(cursor)
            since, mark = data.get("since"), data.get("mark")
            for value in (since, mark):
                if value is not None:
                    datetime.fromisoformat(value)
            anchor = int(data.get("anchor", 0))
        except (ValueError, TypeError, AttributeError):
            return cls()
        return cls(since=since, anchor=max(anchor, 0), mark=mark)

    def page(self) -> str:
        return json.dumps({"v": 1, "since": self.since, "anchor": self.anchor, "mark": self.mark})

    def final(self) -> str:
        return json.dumps({"v": 1, "since": self.mark or self.since})


def _stage_key(code: str, taken: set[str]) -> str:
    key = re.sub(r"[^a-z0-9_]+", "_", code.lower()).strip("_")[:45] or "stage"
    base, n = key, 2
    while key in taken:
        key, n = f"{base}_{n}", n + 1
    taken.add(key)
    return key


_WEBHOOK_URL = re.compile(
    r"(?P<base>https?://[^/?#]+)/rest/(?P<user>\d{1,10})/(?P<secret>[A-Za-z0-9_-]{1,200})/?"
)


class Bitrix24Provider:
    """Битрикс24: companies, contacts and deals through an inbound webhook."""

    name: ClassVar[str] = "bitrix24"
    title: ClassVar[str] = "Битрикс24"
    default_base_url: ClassVar[str | None] = None
    entities: ClassVar[tuple[str, ...]] = ENTITIES
    credentials_schema: ClassVar[type[BaseModel]] = Bitrix24Credentials
    settings_schema: ClassVar[type[BaseModel]] = Bitrix24Settings
    #: The pipeline made for the portal's deals and its stage map stay when the credentials change.
    durable_state: ClassVar[tuple[str, ...]] = ("stages",)

    @staticmethod
    def split_base_url(url: str) -> tuple[str, dict[str, str]]:
        """An inbound webhook URL as the portal shows it (`https://<portal>/rest/<user>/<secret>/`):
        the portal's address and the webhook's user and secret."""
        match = _WEBHOOK_URL.fullmatch(url.strip())
        if match is None:
            return url, {}
        return match["base"], {"webhook_user_id": match["user"], "webhook_secret": match["secret"]}

    def __init__(self) -> None:
        self._clients: ClientsByContext[Bitrix24Client] = ClientsByContext()
        self.stages: mapping.StageInfo | None = None
        #: Portal user id → our member's user id (by e-mail), for `ASSIGNED_BY_ID` → `owner_id`.
        self.owners: dict[str, int] = {}
        #: Set for full runs: rows not seen are soft-deleted.
        self.snapshot_entities: dict[str, tuple[str, ...]] = {}
        self._redis: Redis | None = None

    @staticmethod
    def _settings(ctx: ProviderContext) -> Bitrix24Settings:
        return provider_settings(Bitrix24Settings, ctx)

    def client(self, ctx: ProviderContext) -> Bitrix24Client:
        return self._clients.get(ctx, lambda: self._new_client(ctx))

    def _new_client(self, ctx: ProviderContext) -> Bitrix24Client:
        settings = self._settings(ctx)
        return Bitrix24Client(
            ctx,
            rate=settings.rate_per_second,
            burst=settings.burst,
            retry_attempts=settings.retry_attempts,
            backoff_seconds=settings.backoff_seconds,
            limit_waits=settings.limit_waits,
            timeout=settings.timeout_seconds,
        )

    async def test_connection(self, ctx: ProviderContext) -> ConnectionResult:
        try:
            client = self.client(ctx)
            try:
                await client.call("crm.contact.list", {"select": ["ID"], "start": -1})
                await client.call("user.get", {"FILTER": {"ID": ctx.credentials.get("webhook_user_id")}})
            finally:
                self._clients.forget(ctx)
                await client.aclose()
        except ProviderError as exc:
            return ConnectionResult(ok=False, detail=exc.message)
        return ConnectionResult(ok=True, detail="Connected to Bitrix24")

    # -- the deal pipeline ------------------------------------------------------------------------------

    async def prepare(
        self, session: AsyncSession, ctx: ProviderContext, *, full: bool, entities: list[str]
    ) -> None:
        """Full runs sweep what they did not see; deals need their pipeline and stage map."""
        settings = self._settings(ctx)
        wanted = [e for e in entities if settings.entities is None or e in settings.entities]
        if full:
            self.snapshot_entities = {e: (TARGETS[e],) for e in wanted}
        if "deals" in wanted:
            self.stages = await self._stage_map(session, ctx, settings)
        if wanted:
            self.owners = await self._owners(session, ctx)

    # -- owners -----------------------------------------------------------------------------------------

    async def _portal_users(self, ctx: ProviderContext) -> list[dict[str, Any]]:
        """Every user of the portal (`user.get`, 50 a page; the pages after the first in batches)."""
        client = self.client(ctx)
        body = await client.call("user.get", {"start": 0})
        users = [u for u in _list_rows(body, "user.get") if isinstance(u, dict)]
        total = body.get("total")
        starts = list(range(PAGE_SIZE, total if isinstance(total, int) else len(users), PAGE_SIZE))
        for first in range(0, len(starts), MAX_BATCH):
            group = starts[first : first + MAX_BATCH]
            results, _, _, _ = await client.batch({f"u{n}": ("user.get", {"start": n}) for n in group})
            for part in results.values():
                users.extend(u for u in (part if isinstance(part, list) else []) if isinstance(u, dict))
        return users

    async def _owners(self, session: AsyncSession, ctx: ProviderContext) -> dict[str, int]:
        """Portal users who are members here (matched by e-mail): their portal id → our user id. When
        the portal's users cannot be read (a webhook without the `user` scope), owners stay as they
        are and the portal's user id is kept in the custom fields only."""
        try:
            users = await self._portal_users(ctx)
        except ProviderError as exc:
            if exc.retryable:
                raise
            log.warning("bitrix24_users_unreadable", integration_id=ctx.integration_id, error=exc.message)
            return {}
        emails: dict[str, str] = {}
        for user in users:
            uid, email = user.get("ID"), user.get("EMAIL")
            if isinstance(uid, str | int) and isinstance(email, str) and "@" in email:
                emails[str(uid)] = email.strip().lower()
        if not emails:
            return {}
        found = await session.execute(
            text(
                'SELECT lower(u.email), u.id FROM membership m JOIN "user" u ON u.id = m.user_id '
                "WHERE m.organization_id = :org AND lower(u.email) = ANY(CAST(:emails AS text[]))"
            ),
            {"org": ctx.organization_id, "emails": sorted(set(emails.values()))},
        )
        members: dict[str, int] = {str(email): int(user_id) for email, user_id in found.tuples()}
        return {uid: members[email] for uid, email in emails.items() if email in members}

    async def _remote_stages(self, ctx: ProviderContext, settings: Bitrix24Settings) -> list[dict[str, Any]]:
        entity_id = "DEAL_STAGE" if settings.category_id == 0 else f"DEAL_STAGE_{settings.category_id}"
        body = await self.client(ctx).call(
            "crm.status.list", {"filter": {"ENTITY_ID": entity_id}, "order": {"SORT": "ASC"}}
        )
        rows = body.get("result")
        if not isinstance(rows, list):
            raise ProviderError("Bitrix24 returned an unexpected stage list")
        stages = [r for r in rows if isinstance(r, dict) and isinstance(r.get("STATUS_ID"), str)]

        def sort(row: dict[str, Any]) -> int:
            try:
                return int(row.get("SORT") or 0)
            except (TypeError, ValueError):
                return 0

        return sorted(stages, key=sort)

    async def _stage_map(
        self, session: AsyncSession, ctx: ProviderContext, settings: Bitrix24Settings
    ) -> mapping.StageInfo:
        remote = await self._remote_stages(ctx, settings)
        semantics = {r["STATUS_ID"]: str(r.get("SEMANTICS") or "P").upper() for r in remote}
        names = {r["STATUS_ID"]: str(r.get("NAME") or r["STATUS_ID"])[:200] for r in remote}
        first = next((r["STATUS_ID"] for r in remote if semantics[r["STATUS_ID"]] == "P"), None)
        org = ctx.organization_id
        if settings.pipeline_id is not None:
            pipeline = await session.scalar(
                select(Pipeline.id).where(
                    Pipeline.id == settings.pipeline_id, Pipeline.organization_id == org
                )
            )
            if pipeline is None:
                raise ProviderError(f"pipeline {settings.pipeline_id} of the stage map does not exist")
            ours = set(
                await session.scalars(select(PipelineStage.key).where(PipelineStage.pipeline_id == pipeline))
            )
            stage_keys = {code: key for code, key in settings.stage_map.items() if key in ours}
            return mapping.StageInfo(pipeline, stage_keys, semantics, names, first)
        state = ctx.state.get("stages") if isinstance(ctx.state.get("stages"), dict) else {}
        pipeline_id = state.get("pipeline_id") if isinstance(state, dict) else None
        if pipeline_id is not None:
            pipeline_id = await session.scalar(
                select(Pipeline.id).where(Pipeline.id == pipeline_id, Pipeline.organization_id == org)
            )
        if pipeline_id is None:
            domain = re.sub(r"^https?://", "", ctx.base_url or "").strip("/")[:150]
            created = Pipeline(organization_id=org, name=f"Bitrix24 {domain}".strip(), is_default=False)
            session.add(created)
            await session.flush()
            pipeline_id = created.id
        existing = {
            row.key: row
            for row in await session.scalars(
                select(PipelineStage).where(PipelineStage.pipeline_id == pipeline_id)
            )
        }
        keys: dict[str, str] = dict(state.get("keys") or {}) if isinstance(state, dict) else {}
        taken = set(existing)
        position = max((s.position for s in existing.values()), default=0)
        for row in remote:
            code = row["STATUS_ID"]
            key = keys.get(code)
            if key is None or key not in existing:
                key = key if key is not None and key not in taken else _stage_key(code, taken)
                position += 1
                stage = PipelineStage(
                    organization_id=org, pipeline_id=pipeline_id, key=key, name=names[code], position=position
                )
                session.add(stage)
                existing[key] = stage
                keys[code] = key
            elif existing[key].name != names[code]:
                existing[key].name = names[code]
        await session.flush()
        ctx.state["stages"] = {"pipeline_id": pipeline_id, "keys": keys}
        if ctx.integration_id is not None:
            # Remembered at once, so a job that fails later never creates a second pipeline.
            await session.execute(
                text(
                    "UPDATE integration SET settings = jsonb_set(coalesce(settings, '{}'::jsonb), "
                    "'{_state}', coalesce(settings->'_state', '{}'::jsonb) || CAST(:state AS jsonb)) "
                    "WHERE id = :id"
                ),
                {"state": json.dumps({"stages": ctx.state["stages"]}), "id": ctx.integration_id},
            )
        return mapping.StageInfo(pipeline_id, keys, semantics, names, first)

    # -- reading ----------------------------------------------------------------------------------------

    async def fetch(self, ctx: ProviderContext, entity: str, cursor: str | None) -> AsyncIterator[Page]:
        if entity not in ENTITIES:
            raise ProviderError(f"Bitrix24 provider has no entity {entity!r}")
        settings = self._settings(ctx)
        if settings.entities is not None and entity not in settings.entities:
            yield Page(records=[], cursor=cursor, last=True)
            return
        client = self.client(ctx)
        async for page in self._fetch_pending(ctx, client, entity, cursor):
            yield page
        final: Page | None = None
        latest = cursor
        async for page in self._fetch_list(client, entity, cursor, settings):
            if page.last:
                final = page
                break
            latest = page.cursor
            yield page
        # Events that came in while the list was read, before the entity's last page.
        async for page in self._fetch_pending(ctx, client, entity, latest):
            yield page
        if final is not None:
            yield final

    async def _pending_redis(self) -> Redis:
        if self._redis is None:
            self._redis = Redis.from_url(get_settings().redis_url, socket_timeout=2, socket_connect_timeout=2)
        return self._redis

    async def _fetch_pending(
        self, ctx: ProviderContext, client: Bitrix24Client, entity: str, cursor: str | None
    ) -> AsyncIterator[Page]:
        """The records inbound events named: read one by one (in batches); gone ones deleted."""
        if ctx.integration_id is None or self.snapshot_entities:
            return
        key = pending_key(ctx.integration_id, entity)
        try:
            redis = await self._pending_redis()
            raw_ids = await redis.srandmember(key, MAX_PENDING)
        except (RedisError, OSError):
            log.warning("bitrix24_pending_unreadable", integration_id=ctx.integration_id, entity=entity)
            return
        ids = sorted({i.decode() if isinstance(i, bytes) else str(i) for i in raw_ids or []}, key=_id_order)
        method = METHODS[entity]
        for start in range(0, len(ids), MAX_BATCH):
            chunk = ids[start : start + MAX_BATCH]
            results, errors, _, _ = await client.batch({f"r{i}": (f"{method}.get", {"id": i}) for i in chunk})
            records: list[dict[str, Any]] = []
            for i in chunk:
                found = results.get(f"r{i}")
                if isinstance(found, dict):
                    records.append(found)
                elif f"r{i}" in errors:
                    error = errors[f"r{i}"]
                    description = str(error.get("error_description", "")) if isinstance(error, dict) else ""
                    if "not found" in description.lower():
                        records.append({"ID": i, "_DELETED": True})
            if entity == "companies":
                await self._attach_requisites(client, records)
            # The cursor stays where it was: these reads are beside the incremental scan.
            yield Page(records=records, cursor=cursor, last=False)
            try:
                await redis.srem(key, *chunk)
            except (RedisError, OSError):
                log.warning("bitrix24_pending_not_cleared", integration_id=ctx.integration_id, entity=entity)

    async def _fetch_list(
        self, client: Bitrix24Client, entity: str, cursor: str | None, settings: Bitrix24Settings
    ) -> AsyncIterator[Page]:
        position = _Position.load(cursor)
        since = position.since
        if since is not None and position.mark is None:
            # A new incremental run: re-read a little before the previous run's start.
            since = (datetime.fromisoformat(since) - timedelta(seconds=settings.overlap_seconds)).isoformat()
            position.since = since
        method = f"{METHODS[entity]}.list"

        def params(start: int) -> dict[str, Any]:
            flt: dict[str, Any] = {">ID": position.anchor}
            if position.since is not None:
                flt[">=DATE_MODIFY"] = position.since
            if entity == "deals":
                flt["CATEGORY_ID"] = settings.category_id
            return {"filter": flt, "order": {"ID": "ASC"}, "select": SELECT[entity], "start": start}

        # The first request counts what is left (and tells the portal's time); then batches.
        body = await client.call(method, params(0))
        if position.mark is None:
            stamp = body.get("time", {}).get("date_start") if isinstance(body.get("time"), dict) else None
            position.mark = stamp if isinstance(stamp, str) else None
        rows = _list_rows(body, method)
        total = body.get("total") if isinstance(body.get("total"), int) else 0
        remaining = max(int(total or 0) - len(rows), 0)
        full = len(rows) >= PAGE_SIZE
        if entity == "companies":
            await self._attach_requisites(client, rows)

        async def load(anchor_params: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
            """The next rows after the last id stored: up to 50 pages in one batch request."""
            if len(anchor_params) == 1:
                found = _list_rows(await client.call(method, anchor_params[0]), method)
                complete = len(found) >= PAGE_SIZE
            else:
                results, errors, _, _ = await client.batch(
                    {f"p{n}": (method, p) for n, p in enumerate(anchor_params)}
                )
                if errors:
                    first = next(iter(errors.values()))
                    detail = first.get("error_description", "") if isinstance(first, dict) else ""
                    raise ProviderError(f"Bitrix24 refused a page of {method}: {detail}"[:300])
                found = []
                for n in range(len(anchor_params)):
                    part = results.get(f"p{n}")
                    part = part if isinstance(part, list) else []
                    found.extend(part)
                    if len(part) < PAGE_SIZE:
                        break
                complete = len(found) >= len(anchor_params) * PAGE_SIZE
            if entity == "companies":
                await self._attach_requisites(client, found)
            return found, complete

        pending: asyncio.Future[tuple[list[dict[str, Any]], bool]] | None = None
        try:
            while True:
                if rows:
                    position.anchor = max(position.anchor, *(_id_order(r.get("ID")) for r in rows))
                if not full:
                    yield Page(records=rows, cursor=position.final(), last=True)
                    return
                # The next request runs while the engine stores this page.
                pages = min(MAX_BATCH, max(1, -(-remaining // PAGE_SIZE))) if settings.use_batch else 1
                batch = [params(-1)] if pages == 1 else [params(n * PAGE_SIZE) for n in range(pages)]
                pending = asyncio.ensure_future(load(batch))
                yield Page(records=rows, cursor=position.page(), last=False)
                rows, full = await pending
                pending = None
                remaining = max(remaining - len(rows), 0)
        finally:
            if pending is not None and not pending.done():
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)

    async def _attach_requisites(self, client: Bitrix24Client, rows: list[dict[str, Any]]) -> None:
        """Put each company's first requisite (INN, KPP, OGRN) under `_REQUISITE`."""
        ids = [str(r["ID"]) for r in rows if isinstance(r, dict) and r.get("ID") and not r.get("_DELETED")]
        if not ids:
            return
        found: dict[str, dict[str, Any]] = {}
        chunks = [ids[n : n + PAGE_SIZE] for n in range(0, len(ids), PAGE_SIZE)]
        for start in range(0, len(chunks), MAX_BATCH):
            group = chunks[start : start + MAX_BATCH]
            commands = {
                f"q{start + n}": (
                    "crm.requisite.list",
                    {
                        "filter": {"ENTITY_TYPE_ID": 4, "@ENTITY_ID": chunk},
                        "order": {"ENTITY_ID": "ASC", "ID": "ASC"},
                        "select": ["ENTITY_ID", "RQ_INN", "RQ_KPP", "RQ_OGRN"],
                        "start": -1,
                    },
                )
                for n, chunk in enumerate(group)
            }
            results, _, _, _ = await client.batch(commands)
            for part in results.values():
                for requisite in part if isinstance(part, list) else []:
                    if isinstance(requisite, dict):
                        found.setdefault(str(requisite.get("ENTITY_ID")), requisite)
        for row in rows:
            if isinstance(row, dict) and str(row.get("ID")) in found:
                row["_REQUISITE"] = found[str(row.get("ID"))]

    def map_record(self, entity: str, raw: dict[str, Any]) -> SyncRecord:
        if raw.get("_DELETED"):
            return mapping.deleted_record(TARGETS[entity], str(raw.get("ID")))
        if entity == "contacts":
            return mapping.map_contact(raw, self.owners)
        if entity == "companies":
            return mapping.map_company(raw, self.owners)
        if entity == "deals":
            if self.stages is None:
                raise BadRecord("deal stages are not known", external_id=str(raw.get("ID")))
            return mapping.map_deal(raw, self.stages, self.owners)
        raise BadRecord(f"unknown entity {entity}")

    async def aclose(self) -> None:
        await self._clients.aclose()
        if self._redis is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._redis.aclose()
            self._redis = None


def _id_order(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _list_rows(body: dict[str, Any], method: str) -> list[dict[str, Any]]:
    rows = body.get("result")
    if not isinstance(rows, list):
        raise ProviderError(f"Bitrix24 returned an unexpected list shape for {method}")
    return rows
