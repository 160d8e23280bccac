"""A provider for the admin tests: its connection test answers by the credentials it is given.

`api_key`: `refused…` → `ok: false`; `provider-error…` → `ProviderError` naming the key; `crash…` →
a plain exception naming the key; anything else → `ok: true`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from crm.integrations.base import ConnectionResult, Page, ProviderContext, ProviderError, SyncRecord

#: Connection tests seen, newest last: (base_url, credentials, settings).
SEEN: list[tuple[str | None, dict[str, Any], dict[str, Any]]] = []


class ProbeCredentials(BaseModel):
    api_key: str = Field(min_length=8)
    account: str | None = None
    application_token: str | None = None


class ProbeSettings(BaseModel):
    page_size: int = Field(default=10, ge=1, le=100)


class ProbeProvider:
    name: ClassVar[str] = "probe"
    title: ClassVar[str] = "Probe"
    default_base_url: ClassVar[str | None] = "https://probe.example.com/api/v1"
    entities: ClassVar[tuple[str, ...]] = (
        "product_folders",
        "products",
        "stock",
        "counterparties",
        "customer_orders",
        "demands",
        "contacts",
        "deals",
    )
    credentials_schema: ClassVar[type[BaseModel]] = ProbeCredentials
    settings_schema: ClassVar[type[BaseModel]] = ProbeSettings

    async def test_connection(self, ctx: ProviderContext) -> ConnectionResult:
        SEEN.append((ctx.base_url, dict(ctx.credentials), dict(ctx.settings)))
        key = str(ctx.credentials.get("api_key", ""))
        if key.startswith("refused"):
            return ConnectionResult(ok=False, detail="authentication failed (401)")
        if key.startswith("provider-error"):
            raise ProviderError(f"the remote refused key {key}", status=403)
        if key.startswith("crash"):
            raise RuntimeError(f"unexpected failure with {key}")
        return ConnectionResult(ok=True, detail=f"connected to {ctx.base_url}")

    async def fetch(self, ctx: ProviderContext, entity: str, cursor: str | None) -> AsyncIterator[Page]:
        yield Page(records=[], cursor=None, last=True)

    def map_record(self, entity: str, raw: dict[str, Any]) -> SyncRecord:
        return SyncRecord(target="product", external_id=str(raw["id"]), values={})

    async def aclose(self) -> None:
        return None
