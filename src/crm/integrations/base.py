"""The provider contract: what a plugin found under the `crm.integrations` entry point group offers.

The sync engine knows nothing about any provider. For each entity a provider lists, the engine asks
for pages since a cursor, maps each raw record with `map_record`, upserts the page in bulk into the
record's target table on `(organization_id, source, external_id)`, and saves the page's cursor in the
same transaction. A crashed job resumes from the last saved cursor; a re-run upserts the same rows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

# Part of the contract: providers (plugins included) make every request through `http_client`, an
# `httpx.AsyncClient` whose URLs pass the SSRF guard and whose connections are pinned to the checked
# addresses (redirects included); a refused URL raises `UrlNotAllowed`.
from crm.integrations.ssrf import UrlNotAllowed
from crm.integrations.ssrf import guarded_client as http_client

__all__ = [
    "TARGETS",
    "BadRecord",
    "ConnectionResult",
    "Page",
    "Provider",
    "ProviderContext",
    "ProviderError",
    "SyncRecord",
    "UrlNotAllowed",
    "http_client",
]

#: Local tables a mapped record may target, and what their `values` hold (column names of the model;
#: references to other synced rows are given as the provider's ids in `*_external_id` columns and
#: resolved to local ids by the engine).
TARGETS = (
    "product_folder",  # ProductFolder
    "product",  # Product (kind product|service)
    "store",  # Store
    "stock_level",  # StockLevel; external_id "<product>:<store>", values product/store_external_id
    "company",  # Company (counterparty: legal → legal_entity, entrepreneur → sole_proprietor)
    "contact",  # Contact (counterparty: individual)
    "sales_document",  # SalesDocument (+ children: SalesDocumentPosition values)
    "purchase_document",  # PurchaseDocument (+ children: PurchaseDocumentPosition values)
    "deal",  # Deal (Bitrix24)
    "member",  # organization member from a portal directory
)


@dataclass(slots=True)
class SyncRecord:
    """One remote record mapped onto a local table."""

    target: str
    external_id: str
    values: dict[str, Any]
    children: list[dict[str, Any]] = field(default_factory=list)
    #: Values kept as they came although our API would refuse them (e.g. `invalid_inn`).
    warnings: list[str] = field(default_factory=list)
    remote_updated_at: datetime | None = None
    #: The source no longer has this record: its local row is soft-deleted (or removed, for tables
    #: without `deleted_at`); `values` are ignored. A later record with the same id restores it.
    deleted: bool = False


@dataclass(slots=True)
class Page:
    """A page of raw records and the cursor to resume from once this page is stored.

    `cursor` is opaque to the engine (the provider encodes offsets, `nextHref`, `updated` marks …).
    The last page of an entity carries the cursor the next incremental run starts from.
    """

    records: list[dict[str, Any]]
    cursor: str | None
    last: bool = False


class BadRecord(Exception):
    """A remote record that is structurally broken (no id, wrong types); counted as failed."""

    def __init__(self, message: str, external_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.external_id = external_id


class ProviderError(Exception):
    """The provider refused or failed (auth, 4xx envelope, 5xx after retries); fails the job with a
    message safe to show (never credentials)."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable


@dataclass(slots=True)
class ConnectionResult:
    ok: bool
    detail: str


@dataclass(slots=True)
class ProviderContext:
    """What a provider gets to talk to the remote side: decrypted credentials and settings."""

    organization_id: int
    integration_id: int | None
    base_url: str | None
    credentials: dict[str, Any]
    settings: dict[str, Any]
    #: Saved by the engine into the integration's settings when a provider obtains a token (MoySklad).
    state: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Provider(Protocol):
    """A provider plugin. Entry points in group `crm.integrations` name a zero-argument factory (or
    class) returning one."""

    name: ClassVar[str]
    title: ClassVar[str]
    default_base_url: ClassVar[str | None]
    #: Entities in sync order (references first: folders before products, products before stock).
    entities: ClassVar[tuple[str, ...]]
    credentials_schema: ClassVar[type[BaseModel]]
    settings_schema: ClassVar[type[BaseModel]]

    async def test_connection(self, ctx: ProviderContext) -> ConnectionResult: ...

    def fetch(self, ctx: ProviderContext, entity: str, cursor: str | None) -> AsyncIterator[Page]:
        """Pages of raw records changed since `cursor` (None: everything)."""
        ...

    def map_record(self, entity: str, raw: dict[str, Any]) -> SyncRecord:
        """Map one raw record; raise `BadRecord` when it is structurally broken."""
        ...

    async def aclose(self) -> None: ...


# Optional members a provider may have (looked up with getattr by the engine):
#
# - `snapshot_entities: dict[str, tuple[str, ...]]` — entities whose run delivers every record; rows of
#   the named targets missing from a complete run are deleted (soft-deleted where the table has
#   `deleted_at`). May be set per instance (e.g. only for full runs).
# - `async def prepare(self, session, ctx, *, full: bool, entities: list[str]) -> None` — called once
#   per job before the first entity, in a transaction of its own (e.g. to create the pipeline a
#   provider's deals go to and remember it in `ctx.state`).
# - `durable_state: tuple[str, ...]` — keys of `ctx.state` that outlive new credentials (e.g. the
#   pipeline and stage map a provider created); the rest (session tokens) is dropped when an admin
#   changes the credentials. A new `base_url` (another account) drops all of it.
# - `def event_deletions(self, payload) -> dict[str, list[str]]` — targets and external ids of the records
#   an inbound webhook body (parsed JSON) says were deleted at the source; their rows are soft-deleted
#   as the event is received (`integrations.events`).
