"""A fake MoySklad JSON API 1.2 server (ASGI) serving generated, deterministic data in the real shapes.

What it does like the real one: lists with `context` + `meta{href, size, limit, offset, nextHref,
previousHref}` + `rows`; `filter` (`updated`, `archived`, `id`, `name`, `code`, `externalCode`, `inn`,
`agent`, `store` …, OR for a repeated `=`), `order=updated,asc;id,asc`, `expand=positions,state`
(only with `limit ≤ 100`; embedded positions capped), the positions sub-resource, the current stock
reports by store, `POST /security/token` (basic auth; a new token revokes the old ones), bearer and basic
auth failures with the real 401 envelope and headers, gzip only (415 without it), rate-limit headers on
every authenticated answer and 429 (`1049` window, `1073` parallel) with `X-Lognex-Retry-After`.

Test hooks: `fault(...)` (a status, an HTML 503 or malformed JSON on matching requests), `force_429(n)`,
`touch(...)` (change a record and bump its `updated`), `add_raw(...)` (e.g. a record without an id),
and counters: `requests`, `tokens_issued`, `early_requests` (requests that came before the
`Retry-After` they were given had elapsed).

Rows are generated lazily by index, so `--products 100000` costs nothing until a page is asked for.

By hand: `python -m tests.fakes.moysklad --port 8901 --products 100000`
In tests: `with running(FakeMoySklad(FakeConfig(products=30))) as fake: fake.base_url ...`
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import gzip
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import uvicorn
from starlette.requests import Request
from starlette.responses import Response

from tests.fakes.serving import serving

MSK = timezone(timedelta(hours=3))
PREFIX = "/api/remap/1.2"
ACCOUNT_ID = "1f3c4a52-0b7e-11ef-0a80-0d5b00000001"
CURRENCY_ID = "1fa54f2e-0b7e-11ef-0a80-0d5b0000004b"
UOM_PIECE = "19f1edc0-fc42-4001-94cb-c9ec9c62ec10"
PRICE_TYPES = (
    ("1f4b2d10-0b7e-11ef-0a80-0d5b00000014", "Цена продажи"),
    ("8c1e6f3a-1a30-11ef-0a80-0d5b000001d0", "Оптовая цена"),
)
STATES = {
    "customerorder": (
        ("1f6e8a21-0b7e-11ef-0a80-0d5b00000061", "Новый", "Regular"),
        ("1f6e9c47-0b7e-11ef-0a80-0d5b00000062", "Подтвержден", "Regular"),
        ("1f6eae13-0b7e-11ef-0a80-0d5b00000064", "Отгружен", "Successful"),
    ),
    "demand": (("1f6f0a11-0b7e-11ef-0a80-0d5b00000071", "Отгружено", "Successful"),),
    "supply": (("1f6f1b22-0b7e-11ef-0a80-0d5b00000075", "Принято", "Successful"),),
    "purchaseorder": (("1f6f2c33-0b7e-11ef-0a80-0d5b00000081", "Подтвержден", "Regular"),),
}
DOCUMENTS = ("customerorder", "demand", "supply", "purchaseorder")
TYPE_CODES = {
    "productfolder": 1,
    "product": 2,
    "service": 3,
    "store": 4,
    "counterparty": 5,
    "customerorder": 6,
    "demand": 7,
    "supply": 8,
    "purchaseorder": 9,
    "organization": 10,
}
BASE_MOMENT = datetime(2024, 1, 1, 9, 0, 0)
ERROR_401 = {
    "errors": [
        {
            "error": "Ошибка аутентификации: Неправильный пароль или имя пользователя или ключ авторизации",
            "code": 1056,
            "moreInfo": "https://dev.moysklad.ru/doc/api/remap/1.2/#error_1056",
        }
    ]
}
ERROR_429 = {
    "errors": [
        {
            "error": "Превышено ограничение на количество запросов в единицу времени",
            "code": 1049,
            "moreInfo": "https://dev.moysklad.ru/doc/api/remap/1.2/#error_1049",
        }
    ]
}
ERROR_429_PARALLEL = {
    "errors": [
        {
            "error": "Превышено ограничение на одновременное количество запросов",
            "code": 1073,
            "moreInfo": "https://dev.moysklad.ru/doc/api/remap/1.2/#error_1073",
        }
    ]
}
HTML_503 = b"<html><head><title>Error</title></head><body>503 - Service Unavailable</body></html>"
OPERATORS = (">=", "<=", "!=", "~=", "=~", "=", ">", "<", "~")


def moment(value: datetime) -> str:
    """MoySklad's date-time form: `YYYY-MM-DD HH:MM:SS.mmm`, Moscow time."""
    return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}"


def entity_id(kind: str, index: int) -> str:
    return f"{TYPE_CODES[kind]:08x}-1a32-11ef-0a80-{index:012x}"


def index_of(kind: str, rid: str) -> int | None:
    prefix = f"{TYPE_CODES[kind]:08x}-1a32-11ef-0a80-"
    if not rid.startswith(prefix):
        return None
    try:
        return int(rid[len(prefix) :], 16)
    except ValueError:
        return None


def _hash(*parts: int) -> int:
    value = 0x811C9DC5
    for part in parts:
        value = ((value ^ (part & 0xFFFFFFFF)) * 0x01000193) & 0xFFFFFFFF
    return value


def _inn(seed: int, length: int, valid: bool = True) -> str:
    digits = [int(c) for c in f"{seed:012d}"[-(length - (1 if length == 10 else 2)) :]]
    digits[0] = digits[0] or 7

    def check(weights: tuple[int, ...]) -> int:
        return sum(d * w for d, w in zip(digits, weights, strict=False)) % 11 % 10

    if length == 10:
        digits.append(check((2, 4, 10, 3, 5, 9, 4, 6, 8)))
    else:
        digits.append(check((7, 2, 4, 10, 3, 5, 9, 4, 6, 8)))
        digits.append(check((3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)))
    if not valid:
        digits[-1] = (digits[-1] + 1) % 10
    return "".join(map(str, digits))


@dataclass
class FakeConfig:
    products: int = 20
    services: int = 2
    folders: int = 3
    stores: int = 2
    counterparties: int = 9
    #: Documents of each type (customer orders, shipments, supplies, purchase orders).
    documents: int = 4
    positions: int = 3
    seed: int = 1
    token: str = "7f3d2c1b0a99e8d7c6b5a4f3e2d1c0b9a8f7e6d5"
    login: str = "admin@tehnomir"
    password: str = "s3cret"
    #: Every n-th product is archived (0: none).
    archived_every: int = 0
    #: Every n-th counterparty has an INN with wrong check digits / an unparsable phone (0: none).
    bad_inn_every: int = 0
    bad_phone_every: int = 0
    #: Budget per credential: units per window (None: unlimited); stock reports by store cost 5.
    rate_limit: int | None = None
    window: float = 3.0
    #: Parallel requests per credential (None: unlimited).
    parallel_limit: int | None = None
    #: Embedded `positions.rows` are cut at this many lines (the real cap is 1000).
    embedded_positions_cap: int = 1000
    #: Seconds every request takes (to make parallelism visible).
    latency: float = 0.0
    #: Requests arriving this soon after a 429 was sent were already in flight: not counted as early.
    early_grace: float = 0.05
    #: Public base URL used in hrefs; default: the URL the request came to.
    public_base: str | None = None
    #: Demo data that looks alive (the command line's default): documents spread over the last 90
    #: days instead of from 2024-01-01, and each line sold at its product's own sale price (so margins
    #: are the products' 30 %). Off in tests, whose expectations are fixed values.
    demo: bool = False
    #: "Now" of the demo: the end of the 90 days (default: when the fake starts).
    demo_now: datetime | None = None


#: The span demo documents are spread over.
DEMO_DAYS = 90


@dataclass
class Fault:
    """Answer `status` (or `kind`: "status" | "html503" | "malformed") to requests whose path ends
    with `path` and, when given, whose offset is `offset`, after letting `skip` of them through;
    `times` times (None: always)."""

    path: str | None = None
    skip: int = 0
    offset: int | None = None
    status: int = 500
    kind: str = "status"
    times: int | None = 1


@dataclass
class Logged:
    method: str
    path: str
    params: dict[str, list[str]]
    headers: dict[str, str]
    status: int = 0


@dataclass
class _Collection:
    kind: str
    count: int
    #: (updated, id, index) sorted; index -1 for extra raw records.
    keys: list[tuple[str, str, int]] = field(default_factory=list)
    changes: dict[int, dict[str, Any]] = field(default_factory=dict)
    extras: list[dict[str, Any]] = field(default_factory=list)


class FakeMoySklad:
    """The fake's state and its ASGI app (`fake.app`)."""

    def __init__(
        self, config: FakeConfig | None = None, *, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.config = config or FakeConfig()
        self.clock = clock or (lambda: datetime.now(MSK).replace(tzinfo=None))
        #: The demo's "today" (Moscow time), fixed when the fake starts so documents do not move.
        self.demo_now = self.config.demo_now or self.clock()
        self.tokens: set[str] = {self.config.token}
        self.tokens_issued = 0
        self.requests: list[Logged] = []
        self.faults: list[Fault] = []
        self.forced_429 = 0
        self.retry_after_ms = 1320
        self.early_requests = 0
        self._retry_at: dict[str, tuple[float, float]] = {}
        self._spent: dict[str, deque[tuple[float, int]]] = {}
        self._in_flight: dict[str, int] = {}
        self._lock = threading.Lock()
        self.base_url = ""  # set by `running`
        self.removed: set[tuple[str, int]] = set()
        self._templates: dict[tuple[str, str], list[tuple[str, str, bool]]] = {}
        self._stock_cache: dict[tuple[bool, str, bool], orjson.Fragment] = {}
        #: (product, store) → (stock, reserve, inTransit) overriding the generated figures.
        self.stock_changes: dict[tuple[int, int], tuple[float, float, float]] = {}
        #: (product, store) pairs the stock reports leave out (a product or store that is gone).
        self.stock_hidden: set[tuple[int, int]] = set()
        c = self.config
        sizes = {
            "productfolder": c.folders,
            "product": c.products,
            "service": c.services,
            "store": c.stores,
            "counterparty": c.counterparties,
            "organization": 1,
            **dict.fromkeys(DOCUMENTS, c.documents),
        }
        self.collections = {kind: _Collection(kind, n) for kind, n in sizes.items()}
        for kind, coll in self.collections.items():
            coll.keys = [(self._generated_updated(kind, i), entity_id(kind, i), i) for i in range(coll.count)]
            coll.keys.sort()

    # -- test hooks ------------------------------------------------------------------------------

    def fault(self, **kwargs: Any) -> Fault:
        rule = Fault(**kwargs)
        self.faults.append(rule)
        return rule

    def force_429(self, n: int, retry_after_ms: int = 200) -> None:
        """The next `n` authenticated requests get 429 (code 1049) naming `retry_after_ms`."""
        self.forced_429 = n
        self.retry_after_ms = retry_after_ms

    def touch(self, kind: str, index: int, **values: Any) -> str:
        """Change generated record `index` of `kind` (fields in `values`) and stamp `updated` = now."""
        coll = self.collections[kind]
        with self._lock:
            old = self._updated(kind, index)
            rid = entity_id(kind, index)
            pos = bisect.bisect_left(coll.keys, (old, rid, index))
            if pos < len(coll.keys) and coll.keys[pos] == (old, rid, index):
                coll.keys.pop(pos)
            stamp = moment(self.clock())
            coll.changes[index] = {**coll.changes.get(index, {}), **values, "updated": stamp}
            bisect.insort(coll.keys, (stamp, rid, index))
        return rid

    def remove(self, kind: str, index: int) -> str:
        """Delete generated record `index` of `kind`: gone from lists, 404 by id."""
        coll = self.collections[kind]
        with self._lock:
            rid = entity_id(kind, index)
            coll.keys = [key for key in coll.keys if key[2] != index]
            self.removed.add((kind, index))
        return rid

    def add_raw(self, kind: str, record: dict[str, Any]) -> None:
        """Serve `record` as it is in the lists of `kind` (e.g. one without an id)."""
        coll = self.collections[kind]
        with self._lock:
            coll.extras.append(record)
            stamp, rid = record.get("updated"), record.get("id")
            updated = stamp if isinstance(stamp, str) else moment(self.clock())
            key: tuple[str, str, int] = (updated, rid if isinstance(rid, str) else "", -len(coll.extras))
            bisect.insort(coll.keys, key)

    def set_stock(self, product: int, store: int, stock: float, reserve: float, in_transit: float) -> None:
        """Change the stock figures of a generated product in a store."""
        self.stock_changes[(product, store)] = (stock, reserve, in_transit)
        self._stock_cache.clear()

    def hide_stock(self, product: int, store: int) -> None:
        """Leave a product's line in a store out of the stock reports from now on."""
        self.stock_hidden.add((product, store))
        self._stock_cache.clear()

    def requests_to(self, path_suffix: str) -> list[Logged]:
        return [r for r in self.requests if r.path.endswith(path_suffix)]

    # -- data ------------------------------------------------------------------------------------

    def _generated_updated(self, kind: str, i: int) -> str:
        return moment(BASE_MOMENT + timedelta(minutes=i, milliseconds=(i * 7) % 1000 + TYPE_CODES[kind]))

    def _updated(self, kind: str, i: int) -> str:
        return str(
            self.collections[kind].changes.get(i, {}).get("updated") or self._generated_updated(kind, i)
        )

    def _meta(self, base: str, kind: str, rid: str, *, ui: str | None = None) -> dict[str, Any]:
        meta = {
            "href": f"{base}/entity/{kind}/{rid}",
            "metadataHref": f"{base}/entity/{kind}/metadata",
            "type": kind,
            "mediaType": "application/json",
        }
        if ui:
            meta["uuidHref"] = f"https://online.moysklad.ru/app/#{ui}/edit?id={rid}"
        return meta

    def _link(self, base: str, kind: str, rid: str) -> dict[str, Any]:
        return {"meta": self._meta(base, kind, rid)}

    def _common(self, base: str, kind: str, i: int, ui: str) -> dict[str, Any]:
        rid = entity_id(kind, i)
        return {
            "meta": self._meta(base, kind, rid, ui=ui),
            "id": rid,
            "accountId": ACCOUNT_ID,
            "owner": self._link(base, "employee", "1f9a8b77-0b7e-11ef-0a80-0d5b0000002e"),
            "shared": True,
            "group": self._link(base, "group", "1f3f12aa-0b7e-11ef-0a80-0d5b00000002"),
            "updated": self._generated_updated(kind, i),
        }

    def _generate(self, base: str, kind: str, i: int) -> dict[str, Any]:
        c = self.config
        h = _hash(c.seed, TYPE_CODES[kind], i)
        row = self._common(base, kind, i, {"product": "good", "service": "good"}.get(kind, kind))
        if kind == "productfolder":
            row.update(
                name=f"Группа {i + 1}",
                code=f"F{i:04d}",
                externalCode=f"fold-{i}",
                archived=False,
                pathName="" if i == 0 else "Группа 1",
                vat=20,
                vatEnabled=True,
                useParentVat=False,
            )
            if i > 0:
                row["productFolder"] = self._link(base, "productfolder", entity_id("productfolder", 0))
        elif kind in ("product", "service"):
            row = self._product_row(base, kind, self._product_values(kind, i))
        elif kind == "store":
            row.update(
                name=f"Склад {i + 1}",
                code=f"S{i + 1}",
                externalCode=f"store-{i}",
                archived=False,
                address=f"г Москва, ул Складская, д. {i + 1}",
                pathName="",
            )
        elif kind == "organization":
            row.update(name='ООО "ТехноМир"', companyType="legal", inn="7704123456", archived=False)
        elif kind == "counterparty":
            company_type = ("legal", "entrepreneur", "individual")[i % 3]
            valid_inn = not (c.bad_inn_every and i % c.bad_inn_every == 0)
            good_phone = not (c.bad_phone_every and i % c.bad_phone_every == 0)
            row.update(
                name=f"Контрагент {i + 1}",
                code=f"K-{i + 1:04d}",
                externalCode=f"cp-{i}",
                archived=False,
                created=row["updated"],
                companyType=company_type,
                tags=["покупатель"] if i % 2 else [],
                email=f"client{i}@example.ru",
                phone=f"+7 916 {h % 1000:03d}-{h // 1000 % 100:02d}-{i % 100:02d}" if good_phone else "12",
                salesAmount=0.0,
            )
            if company_type == "legal":
                row.update(
                    legalTitle=f'ООО "Контрагент {i + 1}"',
                    inn=_inn(h, 10, valid_inn),
                    kpp="770401001",
                    legalAddress=f"г Москва, ул Тверская, д. {i + 1}",
                )
            elif company_type == "entrepreneur":
                row.update(
                    legalTitle=f"ИП Контрагент {i + 1}",
                    inn=_inn(h, 12, valid_inn),
                    legalLastName="Иванов",
                    legalFirstName="Иван",
                )
            else:
                row.update(
                    legalLastName="Петров",
                    legalFirstName="Пётр",
                    sex="MALE",
                    actualAddress=f"г Москва, ул Арбат, д. {i + 1}",
                )
                if not valid_inn:
                    row["inn"] = _inn(h, 12, False)
        elif kind in DOCUMENTS:
            doc_moment = self._document_moment(i)
            lines = self._positions(base, kind, i)
            total = sum(
                int(line["price"] * line["quantity"] * (100 - line["discount"]) / 100) for line in lines
            )
            state = STATES[kind][i % len(STATES[kind])]
            row.update(
                name=f"{i + 1:05d}",
                externalCode=f"{kind}-{i}",
                moment=moment(doc_moment),
                applicable=i % 5 != 4,
                rate={"currency": self._link(base, "currency", CURRENCY_ID)},
                sum=float(total),
                organization=self._link(base, "organization", entity_id("organization", 0)),
                state={
                    "meta": {
                        "href": f"{base}/entity/{kind}/metadata/states/{state[0]}",
                        "type": "state",
                        "mediaType": "application/json",
                    }
                },
                created=row["updated"],
                printed=False,
                published=False,
                positions={
                    "meta": {
                        "href": f"{base}/entity/{kind}/{row['id']}/positions",
                        "type": f"{kind}position",
                        "mediaType": "application/json",
                        "size": len(lines),
                        "limit": 1000,
                        "offset": 0,
                    }
                },
                vatEnabled=True,
                vatIncluded=True,
                vatSum=float(total // 6),
                payedSum=0.0,
                description=f"Документ {i + 1}",
            )
            if c.counterparties:
                row["agent"] = self._link(
                    base, "counterparty", entity_id("counterparty", i % c.counterparties)
                )
            if c.stores:
                row["store"] = self._link(base, "store", entity_id("store", i % c.stores))
        changes = self.collections[kind].changes.get(i)
        if changes:
            row.update(changes)
        return row

    def _product_values(self, kind: str, i: int) -> dict[str, Any]:
        """What differs between two generated products (or services)."""
        c = self.config
        h = _hash(c.seed, TYPE_CODES[kind], i)
        sale = 10000 + h % 5_000_000
        return {
            "id": entity_id(kind, i),
            "updated": self._generated_updated(kind, i),
            "name": f"{'Товар' if kind == 'product' else 'Услуга'} {i + 1}",
            "code": f"{i + 1:05d}",
            "externalCode": f"{kind}-{i}",
            "archived": bool(c.archived_every and kind == "product" and i % c.archived_every == 0),
            "sale": float(sale),
            "sale2": float(sale * 9 // 10),
            "buy": float(sale * 7 // 10),
            "min": float(sale // 2),
            "folder": entity_id("productfolder", i % c.folders) if c.folders else "",
            "pathName": f"Группа {i % c.folders + 1}" if c.folders else "",
            "article": f"ART-{h % 100000:05d}",
            "weight": round((h % 5000) / 1000, 3),
            "ean13": f"{4600000000000 + i:013d}",
            "minimumBalance": float(h % 10),
        }

    def _product_row(self, base: str, kind: str, v: dict[str, Any]) -> dict[str, Any]:
        rid = v["id"]
        row: dict[str, Any] = {
            "meta": self._meta(base, kind, rid, ui="good"),
            "id": rid,
            "accountId": ACCOUNT_ID,
            "owner": self._link(base, "employee", "1f9a8b77-0b7e-11ef-0a80-0d5b0000002e"),
            "shared": True,
            "group": self._link(base, "group", "1f3f12aa-0b7e-11ef-0a80-0d5b00000002"),
            "updated": v["updated"],
            "name": v["name"],
            "code": v["code"],
            "externalCode": v["externalCode"],
            "archived": v["archived"],
            "uom": {"meta": self._meta(base, "uom", UOM_PIECE)},
            "salePrices": [
                {
                    **self._price_value(base, value),
                    "priceType": {
                        "meta": {
                            "href": f"{base}/context/companysettings/pricetype/{pid}",
                            "type": "pricetype",
                            "mediaType": "application/json",
                        },
                        "id": pid,
                        "name": name,
                        "externalCode": pid[:8],
                    },
                }
                for (pid, name), value in zip(PRICE_TYPES, (v["sale"], v["sale2"]), strict=True)
            ],
            "buyPrice": self._price_value(base, v["buy"]),
            "minPrice": self._price_value(base, v["min"]),
            "paymentItemType": "GOOD" if kind == "product" else "SERVICE",
        }
        if self.config.folders:
            row["productFolder"] = self._link(base, "productfolder", v["folder"])
            row["pathName"] = v["pathName"]
        if kind == "product":
            row.update(
                article=v["article"],
                weight=v["weight"],
                volume=0.0,
                variantsCount=0,
                barcodes=[{"ean13": v["ean13"]}],
                trackingType="NOT_TRACKED",
                minimumBalance=v["minimumBalance"],
            )
        return row

    def _price_value(self, base: str, value: Any) -> dict[str, Any]:
        return {"value": value, "currency": self._link(base, "currency", CURRENCY_ID)}

    def _product_json(self, base: str, kind: str, i: int) -> orjson.Fragment:
        """The serialized row of an unchanged generated product, from a template (fast for big lists)."""
        pieces = self._templates.get((base, kind))
        if pieces is None:
            symbolic = {k: f"@@{k}@@" for k in self._product_values(kind, 0)}
            text = orjson.dumps(self._product_row(base, kind, symbolic)).decode()
            pieces = self._templates[(base, kind)] = _split_template(text)
        values = self._product_values(kind, i)
        out = []
        for literal, name, whole in pieces:
            out.append(literal)
            if name:
                value = values[name]
                out.append(orjson.dumps(value).decode() if whole else str(value))
        return orjson.Fragment("".join(out).encode())

    def _document_moment(self, i: int) -> datetime:
        c = self.config
        if not c.demo:
            return BASE_MOMENT + timedelta(minutes=i)
        now = self.demo_now.replace(microsecond=0, tzinfo=None)
        # Evenly over the last 90 days, the newest today; hours within the working day.
        span = timedelta(days=DEMO_DAYS)
        step = span / max(c.documents, 1)
        at = now - span + step * (i + 1)
        return min(at.replace(hour=9 + i % 9, minute=(i * 7) % 60, second=0), now)

    def _positions(self, base: str, kind: str, i: int) -> list[dict[str, Any]]:
        c = self.config
        out = []
        for n in range(c.positions if c.products else 0):
            product = (i * c.positions + n) % c.products
            h = _hash(c.seed, 77, i, n)
            pid = f"{0xA0 + TYPE_CODES[kind]:08x}-1a40-11ef-0a80-{i * 1000 + n:012x}"
            doc = entity_id(kind, i)
            out.append(
                {
                    "meta": {
                        "href": f"{base}/entity/{kind}/{doc}/positions/{pid}",
                        "metadataHref": f"{base}/entity/{kind}/metadata",
                        "type": f"{kind}position",
                        "mediaType": "application/json",
                    },
                    "id": pid,
                    "accountId": ACCOUNT_ID,
                    "quantity": 1 + h % 10,
                    "price": (
                        self._product_values("product", product)["sale"]
                        if c.demo
                        else float(10000 + h % 500000)
                    ),
                    "discount": (0, 0, 5)[n % 3],
                    "vat": 20,
                    "vatEnabled": True,
                    "assortment": {
                        "meta": self._meta(base, "product", entity_id("product", product), ui="good")
                    },
                }
            )
        return out

    def stock(self, product: int, store: int) -> tuple[float, float, float]:
        """(stock, reserve, inTransit) of a generated product in a store (after `set_stock`)."""
        changed = self.stock_changes.get((product, store))
        if changed is not None:
            return changed
        h = _hash(self.config.seed, 99, product, store)
        stock = float(h % 50) if h % 4 else 0.0
        return stock, float(h % 3 if stock else 0), float(h % 2)

    # -- HTTP ------------------------------------------------------------------------------------

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        request = Request(scope, receive)
        response = await self._handle(request)
        await response(scope, receive, send)

    def _respond(
        self,
        request: Request,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
        *,
        raw: bytes | None = None,
    ) -> Response:
        headers = dict(headers or {})
        content = raw if raw is not None else (orjson.dumps(body) if body is not None else b"")
        headers.setdefault("Content-Type", "application/json;charset=utf-8")
        if content:
            content = gzip.compress(content, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        headers["Vary"] = "Accept-Encoding"
        return Response(content, status_code=status, headers=headers)

    def _unauthorized(self, request: Request) -> Response:
        response = self._respond(
            request,
            401,
            ERROR_401,
            {
                "X-Lognex-Auth": "401001",
                "X-Lognex-Auth-Message": quote(
                    "Неправильный пароль или имя пользователя или ключ авторизации"
                ),
            },
        )
        response.headers.append("WWW-Authenticate", 'Basic realm="MoySklad JSON API 1.2"')
        response.headers.append("WWW-Authenticate", 'Bearer realm="MoySklad JSON API 1.2"')
        return response

    def _credential(self, request: Request) -> tuple[str | None, str | None]:
        """(credential key, scheme) of a valid Authorization header, or (None, scheme)."""
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            return (f"user:{self.config.login}" if value in self.tokens else None), "bearer"
        if scheme.lower() == "basic":
            try:
                login, _, password = base64.b64decode(value).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None, "basic"
            ok = login == self.config.login and password == self.config.password
            return (f"user:{login}" if ok else None), "basic"
        return None, None

    def _limit_headers(self, key: str, remaining: int, reset_ms: int) -> dict[str, str]:
        limit = self.config.rate_limit or 45
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(remaining, 0)),
            "X-Lognex-Retry-TimeInterval": str(int(self.config.window * 1000)),
            "X-Lognex-Retry-After": str(reset_ms),
            "X-Lognex-Reset": str(reset_ms),
        }

    def _budget(self, key: str, weight: int) -> tuple[bool, int, int]:
        """(allowed, remaining units, ms until enough units are free) for one more request."""
        now = time.monotonic()
        spent = self._spent.setdefault(key, deque())
        window = self.config.window
        while spent and spent[0][0] <= now - window:
            spent.popleft()
        limit = self.config.rate_limit
        used = sum(w for _, w in spent)
        if limit is None:
            spent.append((now, weight))
            return True, 45, 0
        if used + weight <= limit:
            spent.append((now, weight))
            return True, limit - used - weight, 0
        freed, wait = 0, 0.0
        for stamp, w in spent:
            freed += w
            wait = stamp + window - now
            if used - freed + weight <= limit:
                break
        return False, 0, max(int(wait * 1000) + 1, 1)

    async def _handle(self, request: Request) -> Response:
        path = request.url.path
        params: dict[str, list[str]] = {}
        for k, v in request.query_params.multi_items():
            params.setdefault(k, []).append(v)
        logged = Logged(
            request.method,
            path.removeprefix(PREFIX),
            params,
            {
                k: request.headers.get(k, "")
                for k in ("accept-encoding", "accept", "authorization", "content-type")
            },
        )
        self.requests.append(logged)
        if "gzip" not in request.headers.get("accept-encoding", "").lower():
            logged.status = 415
            return Response(b"", status_code=415)
        key, scheme = self._credential(request)
        if key is None:
            logged.status = 401
            return self._unauthorized(request)
        now = time.monotonic()
        sent_at, retry_at = self._retry_at.get(key, (0.0, 0.0))
        if sent_at + self.config.early_grace <= now < retry_at:
            self.early_requests += 1
        sub = logged.path
        weight = 5 if sub in ("/report/stock/all", "/report/stock/bystore") else 1
        if self.forced_429 > 0:
            self.forced_429 -= 1
            return self._too_many(logged, key, ERROR_429, self.retry_after_ms)
        allowed, remaining, reset_ms = self._budget(key, weight)
        if not allowed:
            return self._too_many(logged, key, ERROR_429, reset_ms)
        limit = self.config.parallel_limit
        if limit is not None and self._in_flight.get(key, 0) >= limit:
            return self._too_many(logged, key, ERROR_429_PARALLEL, 0)
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        try:
            if self.config.latency:
                await asyncio.sleep(self.config.latency)
            headers = self._limit_headers(key, remaining, 0)
            fault = self._fault_for(sub, params)
            if fault is not None:
                logged.status = 200 if fault.kind == "malformed" else fault.status
                if fault.kind == "malformed":
                    return self._respond(
                        request, 200, None, headers, raw=b'{"meta": {"size": 1}, "rows": [{"id": '
                    )
                if fault.kind == "html503":
                    return self._respond(
                        request,
                        503,
                        None,
                        {**headers, "Content-Type": "text/html;charset=utf-8"},
                        raw=HTML_503,
                    )
                return self._respond(
                    request, fault.status, {"errors": [{"error": "Внутренняя ошибка", "code": 1999}]}, headers
                )
            status, body = self._route(request, sub, params, scheme)
            logged.status = status
            return self._respond(request, status, body, headers)
        finally:
            self._in_flight[key] -= 1

    def _too_many(self, logged: Logged, key: str, body: dict[str, Any], retry_ms: int) -> Response:
        logged.status = 429
        now = time.monotonic()
        self._retry_at[key] = (now, max(self._retry_at.get(key, (0.0, 0.0))[1], now + retry_ms / 1000))
        headers = self._limit_headers(key, 0, retry_ms)
        content = gzip.compress(orjson.dumps(body), compresslevel=1)
        return Response(
            content,
            status_code=429,
            headers={
                **headers,
                "Content-Type": "application/json;charset=utf-8",
                "Content-Encoding": "gzip",
                "Vary": "Accept-Encoding",
            },
        )

    def _fault_for(self, sub: str, params: dict[str, list[str]]) -> Fault | None:
        for rule in self.faults:
            if rule.times is not None and rule.times <= 0:
                continue
            if rule.path is not None and not sub.endswith(rule.path):
                continue
            if rule.offset is not None and int(params.get("offset", ["0"])[0]) != rule.offset:
                continue
            if rule.skip > 0:
                rule.skip -= 1
                continue
            if rule.times is not None:
                rule.times -= 1
            return rule
        return None

    @staticmethod
    def _error(status: int, code: int, text: str) -> tuple[int, Any]:
        return status, {
            "errors": [
                {
                    "error": text,
                    "code": code,
                    "moreInfo": f"https://dev.moysklad.ru/doc/api/remap/1.2/#error_{code}",
                }
            ]
        }

    def _route(
        self, request: Request, sub: str, params: dict[str, list[str]], scheme: str | None
    ) -> tuple[int, Any]:
        base = self.config.public_base or str(request.base_url).rstrip("/") + PREFIX
        parts = [p for p in sub.split("/") if p]
        if request.method == "POST" and sub == "/security/token":
            if scheme != "basic":
                return self._error(
                    401, 1056, "Ошибка аутентификации: Неправильный пароль или имя пользователя"
                )
            token = secrets.token_hex(20)
            self.tokens = {token}  # issuing revokes every other token of the user
            self.tokens_issued += 1
            return 200, {"access_token": token}
        if request.method != "GET":
            return self._error(405, 1039, "Метод не поддерживается")
        if parts[:1] == ["entity"] and len(parts) >= 2 and parts[1] in self.collections:
            kind = parts[1]
            if len(parts) == 2:
                return self._list(base, kind, params)
            if len(parts) == 3 and parts[2] == "metadata":
                return 200, {
                    "meta": {"href": f"{base}/entity/{kind}/metadata", "mediaType": "application/json"},
                    "states": [self._state(base, kind, s) for s in STATES.get(kind, ())],
                }
            row = self._get(base, kind, parts[2])
            if row is None:
                return self._error(
                    404, 1021, f"Объект с типом '{kind}' и идентификатором '{parts[2]}' не найден"
                )
            if len(parts) == 3:
                return 200, row
            if len(parts) == 4 and parts[3] == "positions" and kind in DOCUMENTS:
                index = index_of(kind, parts[2])
                lines = self._positions(base, kind, index or 0)
                return 200, self._page(f"{base}{sub}", base, f"{kind}position", lines, params)
        if sub == "/report/stock/bystore":
            return self._stock_by_store(base, params)
        if sub == "/report/stock/bystore/current" or sub == "/report/stock/all/current":
            return 200, self._stock_current(sub.endswith("bystore/current"), params)
        return self._error(404, 1002, f"Неопознанный путь: {base}{sub}")

    def _state(self, base: str, kind: str, state: tuple[str, str, str]) -> dict[str, Any]:
        sid, name, state_type = state
        return {
            "meta": {
                "href": f"{base}/entity/{kind}/metadata/states/{sid}",
                "metadataHref": f"{base}/entity/{kind}/metadata",
                "type": "state",
                "mediaType": "application/json",
            },
            "id": sid,
            "name": name,
            "color": 15106326,
            "stateType": state_type,
            "entityType": kind,
        }

    def _get(self, base: str, kind: str, rid: str) -> dict[str, Any] | None:
        index = index_of(kind, rid)
        if (
            index is not None
            and 0 <= index < self.collections[kind].count
            and (kind, index) not in self.removed
        ):
            return self._generate(base, kind, index)
        return None

    def _record(self, base: str, kind: str, index: int) -> dict[str, Any]:
        if index < 0:
            return dict(self.collections[kind].extras[-index - 1])
        return self._generate(base, kind, index)

    def _serial(self, base: str, kind: str, index: int) -> Any:
        """A list row: pre-serialized from a template when it is an unchanged product or service."""
        if index >= 0 and kind in ("product", "service") and index not in self.collections[kind].changes:
            return self._product_json(base, kind, index)
        return self._record(base, kind, index)

    def _list(self, base: str, kind: str, params: dict[str, list[str]]) -> tuple[int, Any]:
        try:
            limit = int(params.get("limit", ["1000"])[0])
            offset = int(params.get("offset", ["0"])[0])
        except ValueError:
            return self._error(400, 1014, "Неверное значение параметра limit/offset")
        if not 1 <= limit <= 1000 or offset < 0:
            return self._error(400, 1014, "Параметр limit должен быть от 1 до 1000")
        try:
            conditions = parse_filter(params.get("filter", [""])[0])
        except ValueError as exc:
            return self._error(400, 1035, str(exc))
        order = params.get("order", [""])[0]
        if order and order.split(";")[0].split(",")[0] not in ("updated", "id"):
            return self._error(400, 1063, f"Сортировка по полю недоступна: {order}")
        coll = self.collections[kind]
        keys = coll.keys
        start = 0
        for f, op, v in conditions:
            if f == "updated" and op == ">=":
                start = max(start, bisect.bisect_left(keys, (v, "", -(10**18))))
            elif f == "updated" and op == ">":
                start = max(start, bisect.bisect_right(keys, (v, "\uffff", 10**18)))
        archived_asked = any(f == "archived" for f, _, _ in conditions)
        others = [
            c for c in conditions if c[0] != "archived" and not (c[0] == "updated" and c[1] in (">=", ">"))
        ]
        archived_values = {v for f, op, v in conditions if f == "archived" and op == "="}

        def keep(row: dict[str, Any]) -> bool:
            archived = bool(row.get("archived", False))
            if not archived_asked and archived:
                return False
            if archived_values and str(archived).lower() not in archived_values:
                return False
            return matches(row, others)

        cheap = not others and (
            (archived_asked and archived_values >= {"true", "false"})
            or not self.config.archived_every
            or kind != "product"
        )
        size, page = 0, []
        with self._lock:
            selected = keys[start:]
        if cheap and not coll.extras:
            size = len(selected)
            page = [self._serial(base, kind, i) for _, _, i in selected[offset : offset + limit]]
        else:
            for _, _, i in selected:
                row = self._record(base, kind, i)
                if keep(row):
                    if offset <= size < offset + limit:
                        page.append(row)
                    size += 1
        expand = {e.strip() for e in params.get("expand", [""])[0].split(",") if e.strip()}
        if limit <= 100 and expand and kind in DOCUMENTS:
            for row in page:
                self._expand(base, kind, row, expand)
        href = f"{base}/entity/{kind}"
        return 200, self._envelope(href, base, kind, page, size, limit, offset, params)

    def _expand(self, base: str, kind: str, row: dict[str, Any], expand: set[str]) -> None:
        index = index_of(kind, str(row.get("id", "")))
        if "positions" in expand and index is not None and isinstance(row.get("positions"), dict):
            lines = self._positions(base, kind, index)
            row["positions"]["rows"] = lines[: self.config.embedded_positions_cap]
        if "state" in expand and isinstance(row.get("state"), dict):
            sid = row["state"]["meta"]["href"].rsplit("/", 1)[-1]
            for state in STATES.get(kind, ()):
                if state[0] == sid:
                    row["state"] = self._state(base, kind, state)

    def _page(
        self, href: str, base: str, kind: str, rows: list[dict[str, Any]], params: dict[str, list[str]]
    ) -> Any:
        limit = int(params.get("limit", ["1000"])[0])
        offset = int(params.get("offset", ["0"])[0])
        return self._envelope(
            href, base, kind, rows[offset : offset + limit], len(rows), limit, offset, params
        )

    def _envelope(
        self,
        href: str,
        base: str,
        kind: str,
        rows: list[dict[str, Any]],
        size: int,
        limit: int,
        offset: int,
        params: dict[str, list[str]],
    ) -> dict[str, Any]:
        rest = [(k, v) for k, vs in params.items() if k not in ("limit", "offset") for v in vs]
        query = urlencode(rest)
        meta: dict[str, Any] = {
            "href": f"{href}?{urlencode([*rest, ('limit', limit), ('offset', offset)])}",
            "metadataHref": f"{base}/entity/{kind}/metadata",
            "type": kind,
            "mediaType": "application/json",
            "size": size,
            "limit": limit,
            "offset": offset,
        }
        extra = f"&{query}" if query else ""
        if offset + limit < size:
            meta["nextHref"] = f"{href}?offset={offset + limit}&limit={limit}{extra}"
        if offset > 0:
            meta["previousHref"] = f"{href}?offset={max(0, offset - limit)}&limit={limit}{extra}"
        return {
            "context": {
                "employee": {
                    "meta": {
                        "href": f"{base}/context/employee",
                        "metadataHref": f"{base}/entity/employee/metadata",
                        "type": "employee",
                        "mediaType": "application/json",
                    }
                }
            },
            "meta": meta,
            "rows": rows,
        }

    def _stock_current(self, by_store: bool, params: dict[str, list[str]]) -> orjson.Fragment:
        """The current stock report (a bare array); generated stock never changes, so it is cached."""
        stock_type = params.get("stockType", ["stock"])[0]
        zeros = params.get("include", [""])[0] == "zeroLines"
        key = (by_store, stock_type, zeros)
        cached = self._stock_cache.get(key)
        if cached is None:
            cached = self._stock_cache[key] = orjson.Fragment(
                orjson.dumps(self._stock_lines(by_store, stock_type, zeros))
            )
        return cached

    def _stock_by_store(self, base: str, params: dict[str, list[str]]) -> tuple[int, Any]:
        """`/report/stock/bystore`: products paged (`limit` ≤ 1000), each with its stores; generated
        per request. `filter=stockMode=all` lists products without any stock too (default: only
        products with a non-zero figure somewhere)."""
        try:
            limit = int(params.get("limit", ["1000"])[0])
            offset = int(params.get("offset", ["0"])[0])
        except ValueError:
            return self._error(400, 1001, "Неверный параметр запроса")
        if not 1 <= limit <= 1000 or offset < 0:
            return self._error(412, 3033, "Параметр limit должен быть от 1 до 1000")
        conditions = [part.partition("=") for part in params.get("filter", [""])[0].split(";") if part]
        mode = next((value for name, _, value in conditions if name == "stockMode"), "nonEmpty")
        c = self.config
        store_meta = [
            (self._meta(base, "store", entity_id("store", s), ui="warehouse"), f"Склад {s + 1}")
            for s in range(c.stores)
        ]

        def lines(p: int) -> list[dict[str, Any]]:
            out = []
            for s, (meta, name) in enumerate(store_meta):
                if (p, s) in self.stock_hidden:
                    continue
                stock, reserve, in_transit = self.stock(p, s)
                out.append(
                    {"meta": meta, "name": name, "stock": stock, "reserve": reserve, "inTransit": in_transit}
                )
            return out

        def listed(p: int) -> bool:
            return mode == "all" or any(self.stock(p, s) != (0.0, 0.0, 0.0) for s in range(c.stores))

        products = range(c.products) if mode == "all" else [p for p in range(c.products) if listed(p)]
        rows = []
        for p in products[offset : offset + limit]:
            meta = self._meta(base, "product", entity_id("product", p), ui="good")
            meta["href"] += "?expand=supplier"
            rows.append({"meta": meta, "stockByStore": lines(p)})
        body = self._envelope(
            f"{base}/report/stock/bystore", base, "stockbystore", rows, len(products), limit, offset, params
        )
        body["meta"].pop("metadataHref", None)
        return 200, body

    def _stock_lines(self, by_store: bool, stock_type: str, zeros: bool) -> list[dict[str, Any]]:
        figure = {"stock": 0, "reserve": 1, "inTransit": 2}.get(stock_type, 0)
        out: list[dict[str, Any]] = []
        c = self.config
        stores = [entity_id("store", s) for s in range(c.stores)]
        for p in range(c.products):
            pid = entity_id("product", p)
            values = [self.stock(p, s)[figure] for s in range(c.stores)]
            if by_store:
                out.extend(
                    {"assortmentId": pid, "storeId": stores[s], stock_type: v}
                    for s, v in enumerate(values)
                    if (v or zeros) and (p, s) not in self.stock_hidden
                )
            elif sum(values) or zeros:
                out.append({"assortmentId": pid, stock_type: sum(values)})
        if by_store and stock_type == "reserve" and c.products:
            out.append({"assortmentId": entity_id("product", 0), "storeId": None, "reserve": 1.0})
        return out


_MARKER = re.compile(r'"@@(\w+)@@"|@@(\w+)@@')


def _split_template(text: str) -> list[tuple[str, str, bool]]:
    """`[(literal, field, whole JSON value?)]` of a row serialized with `@@field@@` markers."""
    pieces, last = [], 0
    for match in _MARKER.finditer(text):
        whole = match.group(1) is not None
        pieces.append((text[last : match.start()], match.group(1) or match.group(2), whole))
        last = match.end()
    pieces.append((text[last:], "", False))
    return pieces


def parse_filter(raw: str) -> list[tuple[str, str, str]]:
    """`field<op>value;…` → [(field, op, value)]; date-times normalised to `YYYY-MM-DD HH:MM:SS.mmm`."""
    out: list[tuple[str, str, str]] = []
    if not raw:
        return out
    parts, current, escaped = [], "", False
    for ch in raw:
        if escaped:
            current += ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ";":
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    for part in filter(None, parts):
        positions = [(part.find(op), op) for op in OPERATORS if part.find(op) > 0]
        if not positions:
            raise ValueError(f"Неверный фильтр: {part}")
        at = min(p for p, _ in positions)
        op = next(op for p, op in positions if p == at)  # longest operator first at that position
        name, value = part[:at], part[at + len(op) :]
        if name in ("updated", "moment", "created"):
            value = _normal_moment(value)
        out.append((name, op, value))
    return out


def _normal_moment(value: str) -> str:
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"):
        try:
            return moment(datetime.strptime(value, fmt))
        except ValueError:
            continue
    raise ValueError(f"Неверный формат даты: '{value}'")


def _field(row: dict[str, Any], name: str) -> str:
    value = row.get(name)
    if isinstance(value, dict) and isinstance(value.get("meta"), dict):
        return str(value["meta"].get("href", ""))
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else str(value)


def matches(row: dict[str, Any], conditions: list[tuple[str, str, str]]) -> bool:
    equals: dict[str, list[str]] = {}
    for name, op, value in conditions:
        actual = _field(row, name)
        if op == "=":
            equals.setdefault(name, []).append(value)
        elif op == "!=" and actual == value:
            return False
        elif op in (">=", ">", "<=", "<"):
            ok = {">=": actual >= value, ">": actual > value, "<=": actual <= value, "<": actual < value}[op]
            if not actual or not ok:
                return False
        elif op in ("~", "~=", "=~"):
            text, wanted = actual.lower(), value.lower()
            found = {"~": wanted in text, "~=": text.startswith(wanted), "=~": text.endswith(wanted)}[op]
            if not found:
                return False
    return all(_field(row, name) in values for name, values in equals.items())


@contextmanager
def running(fake: FakeMoySklad) -> Iterator[FakeMoySklad]:
    """Serve `fake` on 127.0.0.1 on a free port in a background thread; `fake.base_url` is its API root."""
    with serving(fake.app, "the fake MoySklad server") as port:
        fake.base_url = f"http://127.0.0.1:{port}{PREFIX}"
        yield fake


def main() -> None:
    parser = argparse.ArgumentParser(description="Fake MoySklad JSON API 1.2")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8901)
    for name in (
        "products",
        "services",
        "folders",
        "stores",
        "counterparties",
        "documents",
        "positions",
        "seed",
        "archived_every",
        "bad_inn_every",
        "bad_phone_every",
    ):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(FakeConfig, name))
    parser.add_argument("--rate-limit", type=int, default=None)
    parser.add_argument("--parallel-limit", type=int, default=None)
    parser.add_argument("--token", default=FakeConfig.token)
    parser.add_argument("--login", default=FakeConfig.login)
    parser.add_argument("--password", default=FakeConfig.password)
    parser.add_argument(
        "--no-demo",
        dest="demo",
        action="store_false",
        help="documents from 2024-01-01 with unrelated prices, as the tests see them",
    )
    args = parser.parse_args()
    config = FakeConfig(**{k: v for k, v in vars(args).items() if k not in ("host", "port")})
    fake = FakeMoySklad(config)
    print(f"Fake MoySklad at http://{args.host}:{args.port}{PREFIX} (token {config.token})")
    uvicorn.run(fake.app, host=args.host, port=args.port, log_level="warning", interface="asgi3")


if __name__ == "__main__":
    main()
