"""Kaspi.kz Shop orders as sales documents, their customers as contacts.

Only the CRM's provider contract (`crm.integrations.base`) is imported: this package is installed
beside the core and found through the `crm.integrations` entry point.

Orders come from `GET /orders` (JSON:API: `page[number]` from 0, `page[size]` ≤ 100, `meta.pageCount`)
inside a `creationDate` window of at most 14 days given in epoch milliseconds; lines from
`GET /orders/{id}/entries`. Dates are epoch ms (the seller's day is Almaty's, UTC+5) and are stored in
UTC; money is tenge (KZT) as plain numbers. A status change does not move `creationDate`, so every run
re-reads the last `reread_days` as well as what is new. The cursor is `{"v": 1, "since": <epoch ms>}`:
the start of the last run's final window.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import httpx
import phonenumbers
from pydantic import BaseModel, ConfigDict, Field

from crm.integrations.base import (
    BadRecord,
    ConnectionResult,
    Page,
    ProviderContext,
    ProviderError,
    SyncRecord,
    UrlNotAllowed,
    http_client,
)

DEFAULT_BASE_URL = "https://kaspi.kz/shop/api/v2"
ALMATY = timezone(timedelta(hours=5), "Asia/Almaty")
WINDOW_MS = 14 * 24 * 3600 * 1000
JSON_API = "application/vnd.api+json"
CENT = Decimal("0.01")


class KaspiCredentials(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=500, description="The shop's API token (X-Auth-Token)")


class KaspiSettings(BaseModel):
    days_back: int = Field(default=30, ge=1, le=365, description="How far back the first sync reads")
    reread_days: int = Field(default=14, ge=0, le=14, description="Re-read window for status changes")
    page_size: int = Field(default=100, ge=1, le=100)
    states: list[str] | None = Field(default=None, description="Only orders in these states")
    rate_per_second: float = Field(default=1.0, gt=0, le=50)
    retry_attempts: int = Field(default=5, ge=1, le=10)
    backoff_seconds: float = Field(default=1.0, ge=0.01, le=60)
    timeout_seconds: float = Field(default=60.0, gt=0, le=600)


class _Client:
    def __init__(self, ctx: ProviderContext, settings: KaspiSettings) -> None:
        token = str(ctx.credentials.get("token") or "")
        if not token:
            raise ProviderError("Kaspi credentials need token")
        self.settings = settings
        self._gap = 1.0 / settings.rate_per_second
        self._next = 0.0
        # Through the core's SSRF guard: the URL is checked and connections are pinned to the checked
        # addresses, like every provider's.
        self._http = http_client(
            base_url=(ctx.base_url or DEFAULT_BASE_URL).rstrip("/"),
            timeout=settings.timeout_seconds,
            headers={"X-Auth-Token": token, "Content-Type": JSON_API, "Accept": JSON_API},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        attempt = 0
        while True:
            wait = self._next - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._next = max(self._next, time.monotonic()) + self._gap
            try:
                response = await self._http.get(path, params=params)
            except UrlNotAllowed as exc:
                raise ProviderError(f"Kaspi URL refused: {exc.detail}") from None
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                response = None
                failure = type(exc).__name__
            if response is not None and response.status_code == 200:
                try:
                    body = response.json()
                except ValueError:
                    raise ProviderError("Kaspi returned malformed JSON", status=200) from None
                if not isinstance(body, dict):
                    raise ProviderError("Kaspi returned an unexpected answer", status=200)
                return body
            if response is not None and response.status_code in (401, 403):
                raise ProviderError(f"Kaspi rejected the API token ({response.status_code})", status=401)
            if response is not None and response.status_code not in (429,) and response.status_code < 500:
                raise ProviderError(
                    f"Kaspi refused {path} ({response.status_code})", status=response.status_code
                )
            if response is not None:
                failure = str(response.status_code)
            attempt += 1
            if attempt >= self.settings.retry_attempts:
                raise ProviderError(
                    f"Kaspi is unavailable ({failure}) after {attempt} attempts", retryable=True
                )
            base = self.settings.backoff_seconds
            await asyncio.sleep(min(30.0, base * 2 ** (attempt - 1)) + random.uniform(0, base))  # noqa: S311


def _now_ms() -> int:
    return int(time.time() * 1000)


def _moment(value: Any, what: str, rid: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRecord(f"{what} must be epoch milliseconds", external_id=rid)
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def _money(value: Any, what: str, rid: str) -> Decimal:
    if value is None:
        return Decimal("0.00")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadRecord(f"{what} must be a number", external_id=rid)
    try:
        return Decimal(str(value)).quantize(CENT)
    except InvalidOperation:
        raise BadRecord(f"{what} must be a number", external_id=rid) from None


class KaspiProvider:
    """Kaspi.kz Shop: orders (sales documents) and their customers (contacts)."""

    name: ClassVar[str] = "kaspi"
    title: ClassVar[str] = "Kaspi.kz"
    default_base_url: ClassVar[str | None] = DEFAULT_BASE_URL
    entities: ClassVar[tuple[str, ...]] = ("orders",)
    credentials_schema: ClassVar[type[BaseModel]] = KaspiCredentials
    settings_schema: ClassVar[type[BaseModel]] = KaspiSettings

    def __init__(self) -> None:
        self._clients: list[_Client] = []

    @staticmethod
    def _settings(ctx: ProviderContext) -> KaspiSettings:
        return KaspiSettings.model_validate(
            {k: v for k, v in ctx.settings.items() if k in KaspiSettings.model_fields}
        )

    def _client(self, ctx: ProviderContext) -> _Client:
        client = _Client(ctx, self._settings(ctx))
        self._clients.append(client)
        return client

    async def test_connection(self, ctx: ProviderContext) -> ConnectionResult:
        try:
            client = self._client(ctx)
            now = _now_ms()
            await client.get("/orders", self._params(now - 24 * 3600 * 1000, now, 0, 1, None))
        except ProviderError as exc:
            return ConnectionResult(ok=False, detail=exc.message)
        finally:
            await self.aclose()
        return ConnectionResult(ok=True, detail="Connected to Kaspi.kz")

    @staticmethod
    def _params(start: int, end: int, number: int, size: int, state: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {
            "page[number]": number,
            "page[size]": size,
            "filter[orders][creationDate][$ge]": start,
            "filter[orders][creationDate][$le]": end,
        }
        if state:
            params["filter[orders][state]"] = state
        return params

    async def fetch(self, ctx: ProviderContext, entity: str, cursor: str | None) -> AsyncIterator[Page]:
        if entity != "orders":
            raise ProviderError(f"Kaspi provider has no entity {entity!r}")
        settings = self._settings(ctx)
        client = self._client(ctx)
        now = _now_ms()
        since: int | None = None
        if cursor:
            try:
                since = int(json.loads(cursor)["since"])
            except (ValueError, KeyError, TypeError):
                since = None
        day = 24 * 3600 * 1000
        start = (
            now - settings.days_back * day if since is None else min(since, now - settings.reread_days * day)
        )
        windows: list[tuple[int, int]] = []
        while start < now:
            end = min(start + WINDOW_MS - 1, now)
            windows.append((start, end))
            start = end + 1
        if not windows:
            windows = [(now - day, now)]
        states: list[str | None] = [*settings.states] if settings.states else [None]
        for index, (begin, end) in enumerate(windows):
            final_window = index == len(windows) - 1
            for state in states:
                number = 0
                while True:
                    body = await client.get(
                        "/orders", self._params(begin, end, number, settings.page_size, state)
                    )
                    orders = body.get("data")
                    if not isinstance(orders, list):
                        raise ProviderError("Kaspi returned an unexpected order list")
                    meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
                    pages = meta.get("pageCount") if isinstance(meta, dict) else None
                    # Customers first: the page's contacts are stored before the orders naming them.
                    customers: list[dict[str, Any]] = []
                    records: list[dict[str, Any]] = []
                    for order in orders:
                        if not isinstance(order, dict):
                            records.append({"_kind": "order"})
                            continue
                        attributes = order.get("attributes")
                        customer = attributes.get("customer") if isinstance(attributes, dict) else None
                        if isinstance(customer, dict) and customer.get("id"):
                            customers.append({"_kind": "customer", **customer})
                        if isinstance(order.get("id"), str):
                            entries = await client.get(f"/orders/{order['id']}/entries")
                            order = {**order, "_entries": entries.get("data") or []}
                        records.append({"_kind": "order", **order})
                    records = customers + records
                    number += 1
                    more = isinstance(pages, int) and number < pages and bool(orders)
                    last = final_window and state == states[-1] and not more
                    yield Page(records=records, cursor=json.dumps({"v": 1, "since": begin}), last=last)
                    if not more:
                        break

    def map_record(self, entity: str, raw: dict[str, Any]) -> SyncRecord:
        if raw.get("_kind") == "customer":
            return self._customer(raw)
        return self._order(raw)

    @staticmethod
    def _customer(raw: dict[str, Any]) -> SyncRecord:
        rid = raw.get("id")
        if not isinstance(rid, str) or not rid:
            raise BadRecord("customer has no id")
        first, last = raw.get("firstName") or "", raw.get("lastName") or ""
        name = (
            " ".join(p for p in (first, last) if isinstance(p, str) and p)
            or raw.get("name")
            or "Kaspi customer"
        )
        warnings: list[str] = []
        phone_raw = raw.get("cellPhone")
        phone = None
        if isinstance(phone_raw, str) and phone_raw:
            try:
                number = phonenumbers.parse(
                    phone_raw if phone_raw.startswith("+") else "+7" + phone_raw[-10:], "KZ"
                )
                if phonenumbers.is_possible_number(number):
                    phone = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
                else:
                    warnings.append("invalid_phone")
            except phonenumbers.NumberParseException:
                warnings.append("invalid_phone")
        return SyncRecord(
            target="contact",
            external_id=rid[:100],
            values={
                "full_name": str(name)[:200],
                "phone": phone,
                "phone_raw": phone_raw[:64] if isinstance(phone_raw, str) else None,
                "country": "KZ",
            },
            warnings=warnings,
        )

    @staticmethod
    def _order(raw: dict[str, Any]) -> SyncRecord:
        rid = raw.get("id")
        if not isinstance(rid, str) or not rid:
            raise BadRecord("order has no id")
        attributes = raw.get("attributes")
        if not isinstance(attributes, dict):
            raise BadRecord("order has no attributes", external_id=rid)
        created = _moment(attributes.get("creationDate"), "creationDate", rid)
        if created is None:
            raise BadRecord("order has no creationDate", external_id=rid)
        found = attributes.get("customer")
        customer: dict[str, Any] = found if isinstance(found, dict) else {}
        positions = []
        for entry in raw.get("_entries") or []:
            if not isinstance(entry, dict) or not isinstance(entry.get("attributes"), dict):
                raise BadRecord("an order entry is malformed", external_id=rid)
            line = entry["attributes"]
            offer = line.get("offer") if isinstance(line.get("offer"), dict) else {}
            quantity = line.get("quantity")
            if isinstance(quantity, bool) or not isinstance(quantity, int | float):
                raise BadRecord("an order entry has no quantity", external_id=rid)
            positions.append(
                {
                    "product_external_id": str(offer.get("code"))[:100] if offer.get("code") else None,
                    "quantity": Decimal(str(quantity)),
                    "price": _money(line.get("basePrice"), "basePrice", rid),
                }
            )
        state, status = attributes.get("state"), attributes.get("status")
        local = created.astimezone(ALMATY)
        return SyncRecord(
            target="sales_document",
            external_id=rid[:100],
            values={
                "kind": "customer_order",
                "number": str(attributes.get("code") or rid)[:100],
                "moment": created,
                "counterparty_external_id": customer.get("id")
                if isinstance(customer.get("id"), str)
                else None,
                "total_amount": _money(attributes.get("totalPrice"), "totalPrice", rid),
                "currency": "KZT",
                "state": str(status or state or "")[:100] or None,
                "applicable": status not in ("CANCELLED", "CANCELLING", "RETURNED"),
                "description": f"Kaspi {state or ''} {local:%Y-%m-%d %H:%M} (Almaty)".replace("  ", " "),
                "remote_updated_at": _moment(attributes.get("statusChangeDate"), "statusChangeDate", rid)
                or created,
            },
            children=positions,
        )

    async def aclose(self) -> None:
        clients, self._clients = self._clients, []
        for client in clients:
            await client.aclose()
