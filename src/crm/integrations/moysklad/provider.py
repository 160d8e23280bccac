"""The MoySklad provider: pages of directories, documents and the current stock by store.

Incremental sync runs by `updated` (Moscow time). Lists are read in `updated,id` order and every page
re-anchors on the last `updated` second seen (`filter=updated>=<second>` plus an offset over the rows
already taken in that second), so rows changing while we page neither shift nor hide others. The
cursor is JSON:

- mid-entity: `{"v": 1, "since": <start mark|null>, "anchor": "YYYY-MM-DD HH:MM:SS", "skip": n,
  "mark": <max updated so far|null>}` — a resumed job continues from there;
- last page: `{"v": 1, "since": <max updated seen>}` — the next run starts `overlap_seconds` before it.

Stock is a full snapshot every run (the report has no `updated`); its cursor is ignored, and lines
missing from a complete snapshot are deleted by the engine (`snapshot_entities`).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.ext.asyncio import AsyncSession

from crm.integrations.base import ConnectionResult, Page, ProviderContext, ProviderError, SyncRecord
from crm.integrations.context import ClientsByContext, provider_settings
from crm.integrations.moysklad import mapping
from crm.integrations.moysklad.client import (
    DEFAULT_BASE_URL,
    EXPAND_LIMIT,
    MAX_LIMIT,
    Limits,
    MoySkladClient,
    format_filter_moment,
    normal_moment,
    parse_moment,
)

Entity = Literal[
    "product_folders",
    "products",
    "services",
    "stores",
    "stock",
    "counterparties",
    "customer_orders",
    "demands",
    "supplies",
    "purchase_orders",
]


@dataclass(frozen=True, slots=True)
class _Source:
    path: str
    directory: bool  # archived rows are listed too, so that archiving is noticed
    document: bool = False


SOURCES: dict[str, _Source] = {
    "product_folders": _Source("productfolder", True),
    "products": _Source("product", True),
    "services": _Source("service", True),
    "stores": _Source("store", True),
    "counterparties": _Source("counterparty", True),
    "customer_orders": _Source("customerorder", False, True),
    "demands": _Source("demand", False, True),
    "supplies": _Source("supply", False, True),
    "purchase_orders": _Source("purchaseorder", False, True),
}
#: MoySklad entity types whose `DELETE` events soft-delete local rows at once → their targets. Only
#: tables with `deleted_at` (as for the full runs' sweep): products and documents stay until a sync
#: says otherwise, since sales history refers to them.
EVENT_TARGETS: dict[str, tuple[str, ...]] = {"counterparty": ("company", "contact")}
_REMOTE_ID = re.compile(r"[0-9A-Za-z-]{1,100}")
ENTITIES: tuple[str, ...] = get_args(Entity)
#: Products per request of the stock report (its maximum) and the weight the server charges for one.
STOCK_PRODUCTS_PER_REQUEST = 1000
STOCK_REPORT_WEIGHT = 5
#: Stock lines (product × store) per page handed to the engine.
STOCK_LINES_PER_PAGE = 5000


def _id_from_href(meta: Any) -> str | None:
    """The id at the end of a `meta.href` (`…/entity/product/<id>?expand=…`)."""
    if not isinstance(meta, dict) or not isinstance(meta.get("href"), str):
        return None
    return meta["href"].split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or None


def stock_lines(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of `/report/stock/bystore` (a product with `stockByStore`) as lines `{assortmentId,
    storeId, stock, reserve, inTransit}`. A row or store entry without an id becomes a line without
    it, which the mapping reports as a bad record."""
    lines: list[dict[str, Any]] = []
    for row in rows:
        if not isinstance(row, dict):
            lines.append({"assortmentId": None, "storeId": None})
            continue
        product = _id_from_href(row.get("meta"))
        stores = row.get("stockByStore")
        if not isinstance(stores, list):
            lines.append({"assortmentId": product, "storeId": None})
            continue
        for item in stores:
            if not isinstance(item, dict):
                lines.append({"assortmentId": product, "storeId": None})
                continue
            lines.append(
                {
                    "assortmentId": product,
                    "storeId": _id_from_href(item.get("meta")),
                    "stock": item.get("stock", 0),
                    "reserve": item.get("reserve", 0),
                    "inTransit": item.get("inTransit", 0),
                }
            )
    return lines


class MoySkladCredentials(BaseModel):
    """Either an access token, or a login (`user@account`) and password to obtain one."""

    model_config = ConfigDict(extra="forbid")

    token: str | None = Field(default=None, min_length=1, max_length=500)
    login: str | None = Field(default=None, min_length=1, max_length=200)
    password: str | None = Field(default=None, min_length=1, max_length=500)

    @model_validator(mode="after")
    def _one_way(self) -> MoySkladCredentials:
        if self.token is None and (self.login is None or self.password is None):
            raise ValueError("give either token, or login and password")
        if self.token is not None and (self.login is not None or self.password is not None):
            raise ValueError("give either token, or login and password, not both")
        return self


class MoySkladSettings(BaseModel):
    entities: list[Entity] | None = Field(
        default=None, description="Entities to sync (default: all)", max_length=len(ENTITIES)
    )
    page_size: int = Field(default=MAX_LIMIT, ge=1, le=MAX_LIMIT, description="Rows per request")
    overlap_seconds: int = Field(
        default=120, ge=0, le=86400, description="An incremental run re-reads this much before its mark"
    )
    include_archived: bool = Field(default=True, description="Sync archived directory entries too")
    rate_limit_units: int = Field(default=15, ge=1, le=45, description="Requests per window")
    rate_limit_window: float = Field(default=3.0, gt=0, le=60, description="Window length, seconds")
    parallel_requests: int = Field(default=4, ge=1, le=5)
    retry_attempts: int = Field(default=5, ge=1, le=10, description="Attempts on 5xx and timeouts")
    backoff_seconds: float = Field(default=1.0, ge=0, le=60, description="First retry delay")
    timeout_seconds: float = Field(default=120.0, gt=0, le=600)


@dataclass(slots=True)
class _Position:
    since: str | None = None
    anchor: str | None = None
    skip: int = 0
    mark: str | None = None

    @classmethod
    def load(cls, cursor: str | None, overlap: int) -> _Position:
        if not cursor:
            return cls()
        try:
            data = json.loads(cursor)
            since, anchor, mark = data.get("since"), data.get("anchor"), data.get("mark")
            skip = int(data.get("skip", 0))
            if since is not None:
                parse_moment(since)
            if anchor is not None:
                parse_moment(anchor)
            if mark is not None:
                parse_moment(mark)
        except (ValueError, TypeError, AttributeError):
            return cls()  # an unreadable cursor means a full scan, never a failed job
        if anchor is None and since is not None:
            anchor = format_filter_moment(parse_moment(since) - timedelta(seconds=overlap))
            skip = 0
        return cls(since=since, anchor=anchor, skip=max(skip, 0), mark=mark or since)

    def advance(self, rows: list[dict[str, Any]]) -> None:
        """Move the anchor to the last second seen; count rows already taken in that second."""
        seen = [
            moment
            for row in rows
            if isinstance(row, dict) and (moment := normal_moment(row.get("updated"))) is not None
        ]
        if not seen:
            self.skip += len(rows)
            return
        latest = max(seen)
        if self.mark is None or latest > (normal_moment(self.mark) or ""):
            self.mark = latest
        anchor = latest[:19]
        if anchor != self.anchor:
            self.anchor, self.skip = anchor, 0
        self.skip += sum(1 for moment in seen if moment[:19] >= anchor)
        self.skip += len(rows) - len(seen)

    def page_cursor(self) -> str:
        data = {"v": 1, "since": self.since, "anchor": self.anchor, "skip": self.skip, "mark": self.mark}
        return json.dumps(data)

    def final_cursor(self) -> str:
        return json.dumps({"v": 1, "since": self.mark or self.since})


def _rows(body: Any, what: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("rows"), list):
        raise ProviderError(f"MoySklad returned an unexpected list shape for {what}")
    meta = body.get("meta")
    rows: list[dict[str, Any]] = body["rows"]
    return rows, meta if isinstance(meta, dict) else {}


class MoySkladProvider:
    """МойСклад: product folders, products, services, stores, stock, counterparties, customer
    orders, shipments, supplies and purchase orders."""

    name: ClassVar[str] = "moysklad"
    title: ClassVar[str] = "МойСклад"
    default_base_url: ClassVar[str | None] = DEFAULT_BASE_URL
    entities: ClassVar[tuple[str, ...]] = ENTITIES
    #: Entities whose every run delivers all records: rows missing from a complete run are removed.
    SNAPSHOTS: ClassVar[dict[str, tuple[str, ...]]] = {"stock": ("stock_level",)}
    credentials_schema: ClassVar[type[BaseModel]] = MoySkladCredentials
    settings_schema: ClassVar[type[BaseModel]] = MoySkladSettings

    def __init__(self) -> None:
        self._clients: ClientsByContext[MoySkladClient] = ClientsByContext()
        #: Per run: full runs also sweep counterparties (see `prepare`).
        self.snapshot_entities: dict[str, tuple[str, ...]] = dict(self.SNAPSHOTS)

    async def prepare(
        self, session: AsyncSession, ctx: ProviderContext, *, full: bool, entities: list[str]
    ) -> None:
        """A full run reads every counterparty: companies and contacts it no longer delivers were
        deleted at MoySklad and are soft-deleted here (their history stays). Products are not swept
        (products and services share a table; archiving at MoySklad arrives as `archived`)."""
        chosen = self._settings(ctx).entities
        if full and "counterparties" in entities and (chosen is None or "counterparties" in chosen):
            self.snapshot_entities = {**self.SNAPSHOTS, "counterparties": ("company", "contact")}

    def _settings(self, ctx: ProviderContext) -> MoySkladSettings:
        return provider_settings(MoySkladSettings, ctx)

    def client(self, ctx: ProviderContext) -> MoySkladClient:
        """The client for `ctx` (one per context, shared by its entities; closed with the provider)."""
        return self._clients.get(ctx, lambda: self._new_client(ctx))

    def _new_client(self, ctx: ProviderContext) -> MoySkladClient:
        settings = self._settings(ctx)
        return MoySkladClient(
            ctx,
            limits=Limits(settings.rate_limit_units, settings.rate_limit_window, settings.parallel_requests),
            retry_attempts=settings.retry_attempts,
            backoff_seconds=settings.backoff_seconds,
            timeout=settings.timeout_seconds,
        )

    async def test_connection(self, ctx: ProviderContext) -> ConnectionResult:
        """Read one organization of the account (and obtain a token first for login/password)."""
        try:
            client = self.client(ctx)
            try:
                _rows(await client.get_json("/entity/organization", {"limit": 1}), "organizations")
            finally:
                self._clients.forget(ctx)
                await client.aclose()
        except ProviderError as exc:
            return ConnectionResult(ok=False, detail=exc.message)
        return ConnectionResult(ok=True, detail="Connected to MoySklad")

    async def fetch(self, ctx: ProviderContext, entity: str, cursor: str | None) -> AsyncIterator[Page]:
        if entity not in ENTITIES:
            raise ProviderError(f"MoySklad provider has no entity {entity!r}")
        settings = self._settings(ctx)
        if settings.entities is not None and entity not in settings.entities:
            yield Page(records=[], cursor=cursor, last=True)
            return
        client = self.client(ctx)
        if entity == "stock":
            async for page in self._fetch_stock(client, settings):
                yield page
            return
        async for page in self._fetch_list(client, SOURCES[entity], cursor, settings):
            yield page

    async def _fetch_list(
        self, client: MoySkladClient, source: _Source, cursor: str | None, settings: MoySkladSettings
    ) -> AsyncIterator[Page]:
        position = _Position.load(cursor, settings.overlap_seconds)
        limit = min(settings.page_size, EXPAND_LIMIT) if source.document else settings.page_size

        async def load(anchor: str | None, skip: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
            conditions = [f"updated>={anchor}"] if anchor else []
            if source.directory and settings.include_archived:
                conditions += ["archived=true", "archived=false"]
            params: dict[str, Any] = {"limit": limit, "offset": skip, "order": "updated,asc;id,asc"}
            if conditions:
                params["filter"] = ";".join(conditions)
            if source.document:
                params["expand"] = "positions,state"
            rows, meta = _rows(await client.get_json(f"/entity/{source.path}", params), source.path)
            if source.document:
                for row in rows:
                    await self._complete_positions(client, source, row)
            return rows, meta

        # The next page is requested while the caller stores this one.
        pending = asyncio.ensure_future(load(position.anchor, position.skip))
        try:
            while True:
                rows, meta = await pending
                more = bool(meta.get("nextHref")) and len(rows) > 0
                position.advance(rows)
                if not more:
                    yield Page(records=rows, cursor=position.final_cursor(), last=True)
                    return
                cursor_after = position.page_cursor()
                pending = asyncio.ensure_future(load(position.anchor, position.skip))
                yield Page(records=rows, cursor=cursor_after, last=False)
        finally:
            if not pending.done():
                pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)

    async def _complete_positions(self, client: MoySkladClient, source: _Source, row: Any) -> None:
        """Fetch the lines of a document whose embedded positions were cut off (or not expanded)."""
        if not isinstance(row, dict) or not isinstance(row.get("id"), str):
            return
        positions = row.get("positions")
        if not isinstance(positions, dict) or not isinstance(positions.get("meta"), dict):
            return
        embedded = positions.get("rows")
        size = positions["meta"].get("size")
        if isinstance(embedded, list) and (not isinstance(size, int) or len(embedded) >= size):
            return
        lines: list[Any] = []
        offset = 0
        while True:
            body = await client.get_json(
                f"/entity/{source.path}/{row['id']}/positions", {"limit": MAX_LIMIT, "offset": offset}
            )
            page, meta = _rows(body, f"{source.path} positions")
            lines.extend(page)
            offset += len(page)
            if not meta.get("nextHref") or not page:
                break
        positions["rows"] = lines

    async def _fetch_stock(self, client: MoySkladClient, settings: MoySkladSettings) -> AsyncIterator[Page]:
        """Current stock, reserve and in-transit per product and store (zeros included) from the paged
        `/report/stock/bystore`: one product with all its stores per row, so every line arrives whole.
        Products are read `STOCK_PRODUCTS_PER_REQUEST` at a time (the next request runs while this one
        is stored) and handed out in pages of at most `STOCK_LINES_PER_PAGE` lines."""
        cursor = json.dumps({"v": 1, "snapshot": True})

        async def load(offset: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
            params = {"limit": STOCK_PRODUCTS_PER_REQUEST, "offset": offset, "filter": "stockMode=all"}
            body = await client.get_json("/report/stock/bystore", params, weight=STOCK_REPORT_WEIGHT)
            return _rows(body, "the stock report")

        offset = 0
        pending = asyncio.ensure_future(load(offset))
        try:
            while True:
                rows, meta = await pending
                offset += len(rows)
                more = bool(meta.get("nextHref")) and len(rows) > 0
                if more:
                    pending = asyncio.ensure_future(load(offset))
                lines = stock_lines(rows)
                for start in range(0, max(len(lines), 1), STOCK_LINES_PER_PAGE):
                    last = not more and start + STOCK_LINES_PER_PAGE >= len(lines)
                    yield Page(records=lines[start : start + STOCK_LINES_PER_PAGE], cursor=cursor, last=last)
                if not more:
                    return
        finally:
            if not pending.done():
                pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)

    def map_record(self, entity: str, raw: dict[str, Any]) -> SyncRecord:
        return mapping.map_record(entity, raw)

    def event_deletions(self, payload: Any) -> dict[str, list[str]]:
        """Our targets and the MoySklad ids of the records a webhook body's `DELETE` events name
        (`events[].meta.href` ends with the id)."""
        events = payload.get("events") if isinstance(payload, dict) else None
        gone: dict[str, list[str]] = {}
        for event in events if isinstance(events, list) else []:
            if not isinstance(event, dict) or str(event.get("action") or "").upper() != "DELETE":
                continue
            meta = event.get("meta")
            kind = meta.get("type") if isinstance(meta, dict) else None
            href = meta.get("href") if isinstance(meta, dict) else None
            targets = EVENT_TARGETS.get(kind) if isinstance(kind, str) else None
            if targets is None or not isinstance(href, str):
                continue
            remote_id = href.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
            if not _REMOTE_ID.fullmatch(remote_id):
                continue
            for target in targets:
                gone.setdefault(target, []).append(remote_id)
        return gone

    async def aclose(self) -> None:
        await self._clients.aclose()
