"""The corporate portal provider: its user directory (`GET {base_url}/users`, the shape of our own
`GET /users`: a bare list of `{id, name, email}` with the total in `X-Total-Count`) becomes members of
the organization.

Every sync reads the whole directory (it has no timestamps), `limit`/`offset` paged until the total
is reached or a page comes back empty. A person new to us becomes an inactive user without a password
(an admin activates them); a known one (by the portal's id, else by e-mail) gets name and e-mail
changes; people missing from a complete read lose their membership, not their user or history
(`snapshot_entities`). The key goes in `X-API-Key`; 429 is waited out by `Retry-After`, 5xx and
timeouts retried with backoff.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field

from crm.config import get_settings
from crm.integrations.answers import json_body, unavailable
from crm.integrations.base import (
    BadRecord,
    ConnectionResult,
    Page,
    ProviderContext,
    ProviderError,
    SyncRecord,
)
from crm.integrations.budget import Budget, account_key, shared_budget
from crm.integrations.context import provider_settings
from crm.integrations.ssrf import UrlNotAllowed, guarded_client

USER_AGENT = "crm-sync/1.0"


class PortalCredentials(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_key: str = Field(min_length=1, max_length=500, description="Sent as X-API-Key")


class PortalSettings(BaseModel):
    page_size: int = Field(default=50, ge=1, le=200)
    rate_per_second: float = Field(default=5.0, gt=0, le=100)
    retry_attempts: int = Field(default=5, ge=1, le=10)
    backoff_seconds: float = Field(default=1.0, ge=0.01, le=60)
    rate_limit_waits: int = Field(default=10, ge=1, le=50)
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)


class PortalClient:
    def __init__(self, ctx: ProviderContext, settings: PortalSettings) -> None:
        base = (ctx.base_url or "").strip().rstrip("/")
        if not base:
            raise ProviderError("the portal provider needs the portal API address as base_url")
        key = str(ctx.credentials.get("api_key") or "")
        if not key:
            raise ProviderError("portal credentials need api_key")
        self.settings = settings
        self.budget: Budget = shared_budget(
            account_key("portal", base, key), settings.rate_per_second, 10, get_settings().redis_url
        )
        # Checked and pinned to the checked addresses (DNS rebinding), redirects included.
        self._http = guarded_client(
            base_url=base,
            timeout=httpx.Timeout(settings.timeout_seconds, connect=min(settings.timeout_seconds, 15.0)),
            headers={"Accept": "application/json", "User-Agent": USER_AGENT, "X-API-Key": key},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def users(self, limit: int, offset: int) -> tuple[list[Any], int | None]:
        """One page of the directory and the total the portal names (None when it names none)."""
        attempt = waits = 0
        while True:
            await self.budget.acquire()
            try:
                response = await self._http.get("/users", params={"limit": limit, "offset": offset})
            except UrlNotAllowed as exc:
                raise ProviderError(f"portal URL refused: {exc.reason}") from None
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                attempt += 1
                if attempt >= self.settings.retry_attempts:
                    raise unavailable("the portal", f" ({type(exc).__name__})", attempt) from None
                await asyncio.sleep(self._backoff(attempt))
                continue
            status = response.status_code
            if status == 200:
                body = json_body(response, "the portal")
                if not isinstance(body, list):
                    raise ProviderError(
                        "the portal returned an unexpected user list (not a list)", status=200
                    )
                total = response.headers.get("X-Total-Count")
                return body, int(total) if total and total.isdigit() else None
            if status == 429:
                waits += 1
                if waits > self.settings.rate_limit_waits:
                    raise ProviderError("the portal still rate-limits us (429)", status=429, retryable=True)
                try:
                    delay = float(response.headers.get("Retry-After") or 1)
                except ValueError:
                    delay = 1.0
                await self.budget.pause(min(max(delay, 0.05), 60.0))
                continue
            if status in (401, 403):
                raise ProviderError(f"the portal rejected the API key ({status})", status=status)
            if status >= 500:
                attempt += 1
                if attempt >= self.settings.retry_attempts:
                    raise unavailable("the portal", f" ({status})", attempt, status)
                await asyncio.sleep(self._backoff(attempt))
                continue
            raise ProviderError(f"the portal refused the user list ({status})", status=status)

    def _backoff(self, attempt: int) -> float:
        base = self.settings.backoff_seconds
        return float(min(30.0, base * 2 ** (attempt - 1)) + random.uniform(0, base))  # noqa: S311


class PortalProvider:
    """Корпоративный портал: its user directory as organization members."""

    name: ClassVar[str] = "portal"
    title: ClassVar[str] = "Корпоративный портал"
    default_base_url: ClassVar[str | None] = None
    entities: ClassVar[tuple[str, ...]] = ("users",)
    #: Every run reads the whole directory: members missing from a complete run are removed.
    snapshot_entities: ClassVar[dict[str, tuple[str, ...]]] = {"users": ("member",)}
    credentials_schema: ClassVar[type[BaseModel]] = PortalCredentials
    settings_schema: ClassVar[type[BaseModel]] = PortalSettings

    def __init__(self) -> None:
        self._clients: list[PortalClient] = []

    @staticmethod
    def _settings(ctx: ProviderContext) -> PortalSettings:
        return provider_settings(PortalSettings, ctx)

    async def test_connection(self, ctx: ProviderContext) -> ConnectionResult:
        try:
            client = PortalClient(ctx, self._settings(ctx))
            try:
                _, total = await client.users(1, 0)
            finally:
                await client.aclose()
        except ProviderError as exc:
            return ConnectionResult(ok=False, detail=exc.message)
        shown = f" ({total} users)" if total is not None else ""
        return ConnectionResult(ok=True, detail=f"Connected to the portal{shown}")

    async def fetch(self, ctx: ProviderContext, entity: str, cursor: str | None) -> AsyncIterator[Page]:
        if entity != "users":
            raise ProviderError(f"portal provider has no entity {entity!r}")
        settings = self._settings(ctx)
        client = PortalClient(ctx, settings)
        self._clients.append(client)
        offset = 0
        while True:
            rows, total = await client.users(settings.page_size, offset)
            offset += len(rows)
            last = not rows or (total is not None and offset >= total)
            yield Page(records=rows, cursor=None, last=last)
            if last:
                return

    def map_record(self, entity: str, raw: dict[str, Any]) -> SyncRecord:
        rid = raw.get("id")
        if isinstance(rid, bool) or not isinstance(rid, int | str) or str(rid).strip() == "":
            raise BadRecord("user has no id")
        external_id = str(rid).strip()
        name, email = raw.get("name"), raw.get("email")
        if not isinstance(email, str) or "@" not in email:
            raise BadRecord("user has no e-mail", external_id=external_id)
        if not isinstance(name, str) or not name.strip():
            name = email.split("@", 1)[0]
        return SyncRecord(
            target="member", external_id=external_id, values={"full_name": name.strip()[:200], "email": email}
        )

    async def aclose(self) -> None:
        clients, self._clients = self._clients, []
        for client in clients:
            await client.aclose()
