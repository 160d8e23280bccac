"""A provider that is not built in: serves an in-memory dataset through the provider contract.

Installed in tests through `tests.fakes.plugins.installed_provider("toy",
"tests.fakes.toy_provider:ToyProvider", tmp_path)`, which proves that a plugin found under the
`crm.integrations` entry point group is run by the generic sync engine.

The dataset is either generated from the integration's settings (deterministic, so a worker process
builds the same one) or, when `settings["dataset"]` names one, a `ToyDataset` registered in
`DATASETS` that a test mutates between runs (incremental syncs).

Settings (all optional):

- `products`, `stores`, `folders`, `counterparties`, `documents`: sizes of the generated dataset
  (default 25 products, 3 stores, 2 folders, 0 counterparties, 0 documents; stock = products x stores).
- `page_size` (default 10).
- `bad_records`: how many extra structurally broken product records the dataset carries.
- `fail_after_page`: `{"entity": "products", "page": k}` — the fetch crashes (a plain exception, like a
  worker dying) when asked for the page after the k-th one of that entity.
- `provider_error`: `{"entity": "products", "page": k, "message": ..., "status": ..., "retryable": bool}` —
  a `ProviderError` instead of that page (page 0 = the first page).
- `page_delay`: seconds to sleep before each page (to cancel or race a running job).
- `dataset`: name of a registered `ToyDataset`.

Credentials: `{"api_key": ...}`; the key `"wrong"` is refused like a 401.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from pydantic import BaseModel

from crm.integrations.base import (
    BadRecord,
    ConnectionResult,
    Page,
    ProviderContext,
    ProviderError,
    SyncRecord,
)

ENTITIES = ("folders", "products", "stores", "stock", "counterparties", "sales")


@dataclass
class ToyDataset:
    """Records per entity keyed by id; every change stamps the record with the next clock tick."""

    clock: int = 0
    #: Awaited with (entity, page number) before a page is served: lets a test act mid-sync.
    on_page: Callable[[str, int], Awaitable[None]] | None = None
    records: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: {entity: {} for entity in ENTITIES}
    )

    def put(self, entity: str, raw: dict[str, Any]) -> dict[str, Any]:
        self.clock += 1
        record = {**raw, "updated": self.clock}
        key = str(raw.get("id") if raw.get("id") is not None else f"_bad{self.clock}")
        self.records[entity][key] = record
        return record

    def change(self, entity: str, record_id: str, **values: Any) -> dict[str, Any]:
        return self.put(entity, {**self.records[entity][record_id], **values})

    def good(self, entity: str) -> list[dict[str, Any]]:
        return [r for k, r in self.records[entity].items() if not k.startswith("_bad")]

    @classmethod
    def generate(
        cls,
        *,
        products: int = 25,
        stores: int = 3,
        folders: int = 2,
        counterparties: int = 0,
        documents: int = 0,
        bad_records: int = 0,
    ) -> ToyDataset:
        data = cls()
        for f in range(folders):
            data.put("folders", {"id": f"f{f}", "name": f"Folder {f}", "parent": f"f{f - 1}" if f else None})
        for s in range(stores):
            data.put("stores", {"id": f"s{s}", "name": f"Store {s}", "address": f"Street {s}"})
        for p in range(products):
            data.put(
                "products",
                {
                    "id": f"p{p}",
                    "name": f"Product {p}",
                    "code": f"C{p:06d}",
                    "folder": f"f{p % folders}" if folders else None,
                    "price": 10000 + p,  # kopecks
                    "min_stock": 5,
                },
            )
        for b in range(bad_records):
            # Structurally broken: a name that is not a string, or no id at all.
            data.put("products", {"id": f"bad{b}", "name": 12345} if b % 2 == 0 else {"name": f"No id {b}"})
        for p in range(products):
            for s in range(stores):
                data.put(
                    "stock", {"product": f"p{p}", "store": f"s{s}", "stock": (p * 7 + s) % 20, "reserve": 0}
                )
        for c in range(counterparties):
            kind = ("legal", "individual")[c % 2]
            data.put(
                "counterparties",
                {
                    "id": f"c{c}",
                    "type": kind,
                    "name": f"Counterparty {c}",
                    "inn": f"77{c:08d}" if kind == "legal" else None,
                    "email": f"cp{c}@example.com",
                },
            )
        for d in range(documents):
            lines = [
                {"product": f"p{(d + i) % max(products, 1)}", "quantity": 1 + i, "price": 10000 + d}
                for i in range(2)
            ]
            data.put(
                "sales",
                {
                    "id": f"d{d}",
                    "number": f"{d:05d}",
                    "moment": "2026-01-15T10:00:00Z",
                    "agent": f"c{d % counterparties}" if counterparties else None,
                    "store": "s0" if stores else None,
                    "positions": lines if products else [],
                },
            )
        return data


#: Datasets a test registers under a name given in the integration's `settings["dataset"]`.
DATASETS: dict[str, ToyDataset] = {}


class ToyCredentials(BaseModel):
    api_key: str


class ToySettings(BaseModel):
    page_size: int = 10
    dataset: str | None = None


def _dataset(settings: dict[str, Any]) -> ToyDataset:
    name = settings.get("dataset")
    if name:
        return DATASETS[name]
    sizes = ("products", "stores", "folders", "counterparties", "documents", "bad_records")
    return ToyDataset.generate(**{k: int(settings[k]) for k in sizes if k in settings})


def _roubles(kopecks: Any) -> Decimal:
    return (Decimal(kopecks) / 100).quantize(Decimal("0.01"))


class ToyProvider:
    """The provider contract over a `ToyDataset`; cursors are `{"since": tick, "offset": n}`."""

    name: ClassVar[str] = "toy"
    title: ClassVar[str] = "Toy provider"
    default_base_url: ClassVar[str | None] = None
    entities: ClassVar[tuple[str, ...]] = ENTITIES
    credentials_schema: ClassVar[type[BaseModel]] = ToyCredentials
    settings_schema: ClassVar[type[BaseModel]] = ToySettings

    def __init__(self) -> None:
        self.closed = False
        self._data: ToyDataset | None = None

    async def test_connection(self, ctx: ProviderContext) -> ConnectionResult:
        if ctx.credentials.get("api_key") == "wrong":
            return ConnectionResult(ok=False, detail="authentication failed")
        return ConnectionResult(ok=True, detail="ok")

    async def fetch(self, ctx: ProviderContext, entity: str, cursor: str | None) -> AsyncIterator[Page]:
        settings = ctx.settings
        if ctx.credentials.get("api_key") == "wrong":
            raise ProviderError("toy: authentication failed (401)", status=401)
        if self._data is None:
            self._data = _dataset(settings)
        page_size = int(settings.get("page_size", 10))
        position = json.loads(cursor) if cursor else {"since": 0, "offset": 0}
        since, offset = int(position["since"]), int(position["offset"])
        rows = sorted(
            (r for r in self._data.records[entity].values() if r["updated"] > since),
            key=lambda r: r["updated"],
        )
        high = max((r["updated"] for r in rows), default=since)
        crash = settings.get("fail_after_page") or {}
        fault = settings.get("provider_error") or {}
        ctx.state["fetches"] = int(ctx.state.get("fetches", 0)) + 1
        page_no = 0
        while True:
            if settings.get("page_delay"):
                await asyncio.sleep(float(settings["page_delay"]))
            if self._data.on_page is not None:
                await self._data.on_page(entity, page_no)
            if crash.get("entity") == entity and page_no >= int(crash.get("page", 0)):
                # Like a client error whose text carries a URL with the key: never shown on the job.
                key = ctx.credentials.get("api_key")
                raise RuntimeError(f"injected crash in {entity} page {page_no} (https://toy/?key={key})")
            if fault and fault.get("entity", entity) == entity and page_no >= int(fault.get("page", 0)):
                raise ProviderError(
                    str(fault.get("message", "toy: remote failure")),
                    status=fault.get("status"),
                    retryable=bool(fault.get("retryable", False)),
                )
            chunk = rows[offset : offset + page_size]
            offset += len(chunk)
            last = offset >= len(rows)
            next_cursor = {"since": high, "offset": 0} if last else {"since": since, "offset": offset}
            yield Page(records=chunk, cursor=json.dumps(next_cursor), last=last)
            page_no += 1
            if last:
                return

    def map_record(self, entity: str, raw: dict[str, Any]) -> SyncRecord:
        rid = raw.get("id")
        if entity == "stock":
            return SyncRecord(
                "stock_level",
                f"{raw['product']}:{raw['store']}",
                {
                    "product_external_id": raw["product"],
                    "store_external_id": raw["store"],
                    "stock": Decimal(raw["stock"]),
                    "reserve": Decimal(raw.get("reserve", 0)),
                    "in_transit": Decimal(0),
                },
            )
        if not isinstance(rid, str) or not rid:
            raise BadRecord("record has no id")
        name = raw.get("name")
        if entity != "sales" and not isinstance(name, str):
            raise BadRecord("name must be a string", external_id=rid)
        if entity == "folders":
            return SyncRecord("product_folder", rid, {"name": name, "parent_external_id": raw.get("parent")})
        if entity == "products":
            return SyncRecord(
                "product",
                rid,
                {
                    "name": name,
                    "code": raw.get("code"),
                    "kind": "product",
                    "folder_external_id": raw.get("folder"),
                    "sale_price": _roubles(raw.get("price", 0)),
                    "min_stock": Decimal(raw["min_stock"]) if raw.get("min_stock") is not None else None,
                },
            )
        if entity == "stores":
            return SyncRecord("store", rid, {"name": name, "address": raw.get("address")})
        if entity == "counterparties":
            if raw.get("type") == "individual":
                return SyncRecord("contact", rid, {"full_name": name, "email": raw.get("email")})
            inn = raw.get("inn")
            warnings = ["invalid_inn"] if inn and raw.get("invalid_inn") else []
            return SyncRecord(
                "company",
                rid,
                {"name": name, "kind": "legal_entity", "inn": inn, "email": raw.get("email")},
                warnings=warnings,
            )
        if entity == "sales":
            positions = [
                {
                    "product_external_id": line["product"],
                    "quantity": Decimal(line["quantity"]),
                    "price": _roubles(line["price"]),
                }
                for line in raw.get("positions", [])
            ]
            return SyncRecord(
                "sales_document",
                rid,
                {
                    "kind": "customer_order",
                    "number": raw.get("number"),
                    "moment": datetime.fromisoformat(raw["moment"]),
                    "counterparty_external_id": raw.get("agent"),
                    "store_external_id": raw.get("store"),
                    "total_amount": sum((p["quantity"] * p["price"] for p in positions), Decimal(0)),
                },
                children=positions,
            )
        raise BadRecord(f"unknown entity {entity}", external_id=rid)

    async def aclose(self) -> None:
        self.closed = True
