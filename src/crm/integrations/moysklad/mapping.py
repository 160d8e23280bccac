"""MoySklad records → local rows (`SyncRecord`s). Money comes in kopecks and is stored in roubles;
date-times come in Moscow time and are stored in UTC. Values our API would refuse are kept and flagged
in `warnings`; only a record without an id or with fields of the wrong type raises `BadRecord`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from email_validator import EmailNotValidError, validate_email

from crm.core.validators import normalize_phone, validate_inn, validate_kpp, validate_ogrn
from crm.integrations.base import BadRecord, SyncRecord
from crm.integrations.moysklad.client import parse_moment
from crm.integrations.values import flagged

CENT = Decimal("0.01")
#: Well-known id of the "шт" (piece) unit of measure, the only one worth naming without a lookup.
UOM_PIECE = "19f1edc0-fc42-4001-94cb-c9ec9c62ec10"
COMPANY_KINDS = {"legal": "legal_entity", "entrepreneur": "sole_proprietor"}
DOCUMENT_KINDS = {
    "customer_orders": ("sales_document", "customer_order"),
    "demands": ("sales_document", "demand"),
    "supplies": ("purchase_document", "supply"),
    "purchase_orders": ("purchase_document", "purchase_order"),
}


class _Row:
    """Typed access to one raw record; a field of the wrong type is a `BadRecord`."""

    def __init__(self, raw: dict[str, Any]) -> None:
        if not isinstance(raw, dict):
            raise BadRecord("record is not an object")
        rid = raw.get("id")
        if not isinstance(rid, str) or not rid.strip():
            raise BadRecord("record has no id")
        self.raw = raw
        self.id = rid
        self.warnings: list[str] = []

    def bad(self, message: str) -> BadRecord:
        return BadRecord(message, external_id=self.id)

    def text(self, key: str, *, required: bool = False, limit: int | None = None) -> str | None:
        value = self.raw.get(key)
        if value is None or (value == "" and not required):
            if required:
                raise self.bad(f"{key} is missing")
            return None
        if not isinstance(value, str):
            raise self.bad(f"{key} must be a string")
        if limit is not None and len(value) > limit:
            self.warnings.append(f"truncated_{key}"[:50])
            return value[:limit]
        return value

    def flag(self, key: str) -> bool:
        value = self.raw.get(key, False)
        if not isinstance(value, bool):
            raise self.bad(f"{key} must be a boolean")
        return value

    def number(self, key: str, source: dict[str, Any] | None = None) -> Decimal | None:
        value = (self.raw if source is None else source).get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.bad(f"{key} must be a number")
        try:
            return Decimal(str(value))
        except InvalidOperation:  # pragma: no cover - finite JSON numbers always convert
            raise self.bad(f"{key} must be a number") from None

    def money(self, key: str, source: dict[str, Any] | None = None) -> Decimal | None:
        kopecks = self.number(key, source)
        return None if kopecks is None else (kopecks / 100).quantize(CENT)

    def link(self, key: str, source: dict[str, Any] | None = None) -> str | None:
        """Id of a linked object (`{"meta": {"href": ".../<id>"}}`)."""
        value = (self.raw if source is None else source).get(key)
        if value is None:
            return None
        if not isinstance(value, dict) or not isinstance(value.get("meta"), dict):
            raise self.bad(f"{key} must be a link")
        href = value["meta"].get("href")
        if not isinstance(href, str) or "/" not in href:
            raise self.bad(f"{key} link has no href")
        return href.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or None

    def moment(self, key: str, *, required: bool = False) -> datetime | None:
        value = self.text(key, required=required)
        if value is None:
            return None
        try:
            return parse_moment(value)
        except ValueError:
            raise self.bad(f"{key} is not a date-time") from None

    def checked(self, key: str, check: Callable[[str], str], warning: str, limit: int) -> str | None:
        """A requisite kept as it came; flagged when our API would refuse it."""
        value = self.text(key)
        return None if value is None else flagged(value, key, check, warning, limit, self.warnings)

    def record(
        self, target: str, values: dict[str, Any], children: list[dict[str, Any]] | None = None
    ) -> SyncRecord:
        return SyncRecord(
            target=target,
            external_id=self.id,
            values=values,
            children=children or [],
            warnings=list(dict.fromkeys(self.warnings)),
            remote_updated_at=values.get("remote_updated_at") or self.moment("updated"),
        )


def _email(row: _Row, key: str = "email") -> str | None:
    value = row.text(key, limit=320)
    if value is not None:
        try:
            validate_email(value, check_deliverability=False)
        except EmailNotValidError:
            row.warnings.append("invalid_email")
    return value


def _phone(row: _Row) -> tuple[str | None, str | None]:
    """(E.164 phone, phone as typed); an unparsable phone is kept as typed and flagged."""
    raw = row.text("phone")
    if raw is None:
        return None, None
    try:
        return normalize_phone(raw), raw[:64]
    except ValueError:
        row.warnings.append("invalid_phone")
        return None, raw[:64]


def _tags(row: _Row) -> list[str]:
    tags = row.raw.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise row.bad("tags must be a list of strings")
    return [t[:50] for t in tags]


def map_folder(raw: dict[str, Any]) -> SyncRecord:
    row = _Row(raw)
    return row.record(
        "product_folder",
        {
            "name": row.text("name", required=True, limit=300),
            "path_name": row.text("pathName", limit=1000),
            "parent_external_id": row.link("productFolder"),
            "archived": row.flag("archived"),
            "remote_updated_at": row.moment("updated"),
        },
    )


def _first_sale_price(row: _Row) -> Decimal | None:
    prices = row.raw.get("salePrices")
    if prices is None:
        return None
    if not isinstance(prices, list) or not all(isinstance(p, dict) for p in prices):
        raise row.bad("salePrices must be a list of prices")
    return row.money("value", prices[0]) if prices else None


def _price(row: _Row, key: str) -> Decimal | None:
    price = row.raw.get(key)
    if price is None:
        return None
    if not isinstance(price, dict):
        raise row.bad(f"{key} must be an object")
    return row.money("value", price)


def _min_stock(row: _Row) -> Decimal | None:
    if row.raw.get("minimumBalance") is not None:
        return row.number("minimumBalance")
    minimum = row.raw.get("minimumStock")
    if isinstance(minimum, dict) and minimum.get("quantity") is not None:
        return row.number("quantity", minimum)
    return None


def map_product(raw: dict[str, Any], kind: str = "product") -> SyncRecord:
    """A product or a service (`kind`); `sale_price` is the first sale price."""
    row = _Row(raw)
    uom = row.link("uom")
    return row.record(
        "product",
        {
            "kind": kind,
            "name": row.text("name", required=True, limit=500),
            "code": row.text("code", limit=100),
            "article": row.text("article", limit=100),
            "description": row.text("description"),
            "uom": "шт" if uom == UOM_PIECE else None,
            "folder_external_id": row.link("productFolder"),
            "sale_price": _first_sale_price(row),
            "buy_price": _price(row, "buyPrice"),
            "currency": "RUB",
            "min_stock": _min_stock(row),
            "archived": row.flag("archived"),
            "remote_updated_at": row.moment("updated"),
        },
    )


def map_store(raw: dict[str, Any]) -> SyncRecord:
    row = _Row(raw)
    return row.record(
        "store",
        {
            "name": row.text("name", required=True, limit=300),
            "address": row.text("address", limit=500),
            "archived": row.flag("archived"),
            "remote_updated_at": row.moment("updated"),
        },
    )


def map_counterparty(raw: dict[str, Any]) -> SyncRecord:
    """`legal` → company (legal entity), `entrepreneur` → company (sole proprietor), `individual` →
    contact; region variants (`legalKZ` …) like their base type. An unknown or missing type is a
    legal entity (MoySklad's default), flagged `unknown_company_type` when it was given."""
    row = _Row(raw)
    company_type = row.text("companyType") or "legal"
    base = next((t for t in ("legal", "entrepreneur", "individual") if company_type.startswith(t)), None)
    if base is None:
        row.warnings.append("unknown_company_type")
        base = "legal"
    name = row.text("name", required=True)
    tags = _tags(row)
    if base == "individual":
        phone, phone_raw = _phone(row)
        sex = row.text("sex")
        return row.record(
            "contact",
            {
                "full_name": (name or "")[:200],
                "email": _email(row),
                "phone": phone,
                "phone_raw": phone_raw,
                "gender": sex.lower()[:20] if sex else None,
                "address": row.text("actualAddress", limit=500) or row.text("legalAddress", limit=500),
                "tags": tags,
                "notes": row.text("description"),
            },
        )
    phone, phone_raw = _phone(row)
    ogrn_key = "ogrnip" if base == "entrepreneur" and row.raw.get("ogrnip") else "ogrn"
    return row.record(
        "company",
        {
            "name": (name or "")[:300],
            "kind": COMPANY_KINDS[base],
            "inn": row.checked("inn", validate_inn, "invalid_inn", 12),
            "kpp": row.checked("kpp", validate_kpp, "invalid_kpp", 9),
            "ogrn": row.checked(ogrn_key, validate_ogrn, "invalid_ogrn", 15),
            "email": _email(row),
            "phone": phone or (phone_raw[:32] if phone_raw else None),
            "address": row.text("legalAddress", limit=500) or row.text("actualAddress", limit=500),
            "tags": tags,
            "notes": row.text("description"),
        },
    )


def _positions(row: _Row) -> list[dict[str, Any]]:
    positions = row.raw.get("positions")
    if positions is None:
        return []
    if not isinstance(positions, dict):
        raise row.bad("positions must be a collection")
    lines = positions.get("rows", [])
    if not isinstance(lines, list) or not all(isinstance(line, dict) for line in lines):
        raise row.bad("positions must be a list of lines")
    out = []
    for line in lines:
        quantity = row.number("quantity", line)
        price = row.money("price", line)
        if quantity is None or price is None:
            raise row.bad("a position has no quantity or price")
        cost = row.money("cost", line) if isinstance(line.get("cost"), (int, float)) else None
        out.append(
            {
                "product_external_id": row.link("assortment", line),
                "quantity": quantity,
                "price": price,
                "discount": row.number("discount", line) or Decimal(0),
                "vat": row.number("vat", line) or Decimal(0),
                "cost": cost,
            }
        )
    return out


def _state_name(row: _Row) -> str | None:
    """The state's name when it came expanded (`expand=state`); a bare link has none."""
    state = row.raw.get("state")
    if state is None:
        return None
    if not isinstance(state, dict):
        raise row.bad("state must be a link")
    name = state.get("name")
    return name[:100] if isinstance(name, str) else None


def map_document(entity: str, raw: dict[str, Any]) -> SyncRecord:
    """Customer orders and shipments → sales documents, supplies and purchase orders → purchase
    documents; lines in `children`."""
    target, kind = DOCUMENT_KINDS[entity]
    row = _Row(raw)
    children = _positions(row)
    return row.record(
        target,
        {
            "kind": kind,
            "number": row.text("name", limit=100),
            "moment": row.moment("moment", required=True),
            "counterparty_external_id": row.link("agent"),
            "store_external_id": row.link("store"),
            "total_amount": row.money("sum") or Decimal("0.00"),
            "currency": "RUB",
            "state": _state_name(row),
            "applicable": row.flag("applicable") if "applicable" in raw else True,
            "description": row.text("description"),
            "remote_updated_at": row.moment("updated"),
        },
        children,
    )


def map_stock(raw: dict[str, Any]) -> SyncRecord:
    """A merged line of the current stock report by store: `{assortmentId, storeId, stock, reserve,
    inTransit}`; its id is `<product>:<store>`."""
    if not isinstance(raw, dict):
        raise BadRecord("stock line is not an object")
    product, store = raw.get("assortmentId"), raw.get("storeId")
    if not isinstance(product, str) or not product or not isinstance(store, str) or not store:
        raise BadRecord("stock line has no product or store id")
    external_id = f"{product}:{store}"
    figures: dict[str, Decimal] = {}
    for key, column in (("stock", "stock"), ("reserve", "reserve"), ("inTransit", "in_transit")):
        value = raw.get(key, 0) or 0
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadRecord(f"{key} must be a number", external_id=external_id)
        figures[column] = Decimal(str(value))
    return SyncRecord(
        "stock_level",
        external_id,
        {"product_external_id": product, "store_external_id": store, **figures},
    )


def map_record(entity: str, raw: dict[str, Any]) -> SyncRecord:
    if entity == "product_folders":
        return map_folder(raw)
    if entity == "products":
        return map_product(raw, "product")
    if entity == "services":
        return map_product(raw, "service")
    if entity == "stores":
        return map_store(raw)
    if entity == "stock":
        return map_stock(raw)
    if entity == "counterparties":
        return map_counterparty(raw)
    if entity in DOCUMENT_KINDS:
        return map_document(entity, raw)
    raise BadRecord(f"unknown entity {entity}")
