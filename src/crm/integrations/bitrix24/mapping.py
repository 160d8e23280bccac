"""Bitrix24 CRM rows → local rows (`SyncRecord`s).

Bitrix24 sends ids and money as strings, links as `null`, `"0"` or `""`, date-times with the portal's
offset (stored in UTC) and dates as a shifted midnight (the date part is kept). Multifields (`EMAIL`,
`PHONE`, `WEB`) are lists: the first `WORK` value (else the first value) fills our field, and every value
is kept under `custom_fields.bitrix24` with its type, so nothing the portal holds is dropped. A row
without an id, or with a field of the wrong type, is a `BadRecord`; a value our API would refuse (a phone
that does not parse, an INN with bad check digits) is stored as it came and flagged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from email_validator import EmailNotValidError, validate_email

from crm.core.validators import normalize_phone, validate_inn, validate_kpp, validate_ogrn
from crm.integrations.base import BadRecord, SyncRecord
from crm.integrations.values import flagged

CENT = Decimal("0.01")
#: Plain ASCII addresses and E.164 numbers (the common case) are accepted without the full parsers,
#: which cost most of a page's mapping time.
_PLAIN_EMAIL = re.compile(
    r"[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}"
)
_E164_RU = re.compile(r"\+7\d{10}")


@dataclass(slots=True)
class StageInfo:
    """What deals need from the stage map: our pipeline, our key and the semantics per remote stage."""

    pipeline_id: int
    keys: dict[str, str] = field(default_factory=dict)  # remote STATUS_ID → our stage key
    semantics: dict[str, str] = field(default_factory=dict)  # remote STATUS_ID → P|S|F
    names: dict[str, str] = field(default_factory=dict)
    first: str | None = None  # the first in-progress stage (deals there are `new`)


def none_link(value: Any) -> str | None:
    """A link id, or None for Bitrix24's three spellings of "none"."""
    if value is None or value == "" or value == "0" or value == 0:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("link must be an id")
    return str(value)


class _Row:
    def __init__(self, raw: dict[str, Any]) -> None:
        if not isinstance(raw, dict):
            raise BadRecord("record is not an object")
        rid = raw.get("ID")
        if isinstance(rid, int) and not isinstance(rid, bool):
            rid = str(rid)
        if not isinstance(rid, str) or not rid.strip():
            raise BadRecord("record has no ID")
        self.raw = raw
        self.id = rid.strip()
        self.warnings: list[str] = []

    def bad(self, message: str) -> BadRecord:
        return BadRecord(message, external_id=self.id)

    def text(self, key: str, limit: int | None = None) -> str | None:
        value = self.raw.get(key)
        if value is None or value == "":
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise self.bad(f"{key} must be a string")
        value = value.strip()
        if limit is not None and len(value) > limit:
            self.warnings.append(f"truncated_{key.lower()}"[:50])
            value = value[:limit]
        return value or None

    def link(self, key: str) -> str | None:
        try:
            return none_link(self.raw.get(key))
        except ValueError:
            raise self.bad(f"{key} must be an id") from None

    def money(self, key: str) -> Decimal | None:
        value = self.raw.get(key)
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.bad(f"{key} must be a number")
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise self.bad(f"{key} must be a number") from None
        if not number.is_finite():
            raise self.bad(f"{key} must be a number")
        return number.quantize(CENT)

    def _parsed(self, key: str, parse: Callable[[str], Any], what: str) -> Any:
        value = self.text(key)
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError:
            raise self.bad(f"{key} must be a {what}") from None

    def moment(self, key: str) -> datetime | None:
        parsed: datetime | None = self._parsed(key, datetime.fromisoformat, "date-time")
        if parsed is None:
            return None
        if parsed.tzinfo is None:
            raise self.bad(f"{key} has no UTC offset")
        return parsed.astimezone(UTC)

    def day(self, key: str) -> date | None:
        """A date field: the date part as written (Bitrix24 sends a shifted midnight)."""
        day: date | None = self._parsed(key, lambda value: date.fromisoformat(value[:10]), "date")
        return day

    def multi(self, key: str) -> list[dict[str, str]]:
        """A multifield as `[{type, value}]` (empty when absent)."""
        items = self.raw.get(key)
        if items is None or items == "":
            return []
        if not isinstance(items, list):
            raise self.bad(f"{key} must be a list")
        out = []
        for item in items:
            if not isinstance(item, dict):
                raise self.bad(f"{key} items must be objects")
            value = item.get("VALUE")
            if value is None or value == "":
                continue
            if not isinstance(value, str):
                raise self.bad(f"{key} values must be strings")
            kind = item.get("VALUE_TYPE")
            out.append({"type": str(kind or "OTHER").upper()[:20], "value": value.strip()})
        return out

    def record(self, target: str, values: dict[str, Any]) -> SyncRecord:
        return SyncRecord(
            target=target,
            external_id=self.id,
            values=values,
            warnings=list(dict.fromkeys(self.warnings)),
            remote_updated_at=self.moment("DATE_MODIFY"),
        )


def first_work(items: list[dict[str, str]]) -> str | None:
    """The first WORK value, else the first value."""
    for item in items:
        if item["type"] == "WORK":
            return item["value"]
    return items[0]["value"] if items else None


def _email(row: _Row, items: list[dict[str, str]]) -> str | None:
    value = first_work(items)
    if value is None:
        return None
    if len(value) > 320:
        row.warnings.append("truncated_email")
        return value[:320]
    if _PLAIN_EMAIL.fullmatch(value) and ".." not in value and not value.startswith("."):
        return value
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        row.warnings.append("invalid_email")
    return value


def _phone(row: _Row, items: list[dict[str, str]]) -> tuple[str | None, str | None]:
    raw = first_work(items)
    if raw is None:
        return None, None
    if _E164_RU.fullmatch(raw) and raw[2] in "3489":  # a Russian E.164 number as phonenumbers would give it
        return raw, raw
    try:
        return normalize_phone(raw), raw[:64]
    except ValueError:
        row.warnings.append("invalid_phone")
        return None, raw[:64]


def _extra(row: _Row, keys: tuple[str, ...], multis: dict[str, list[dict[str, str]]]) -> dict[str, Any]:
    """What the portal holds beyond our columns, under `custom_fields.bitrix24`."""
    extra: dict[str, Any] = {}
    for key in keys:
        value = row.raw.get(key)
        if value not in (None, "", [], "0"):
            extra[key.lower()] = value
    for name, items in multis.items():
        if items:
            extra[name] = items
    return {"bitrix24": extra}


def _full_name(row: _Row) -> str:
    parts = [row.text(k) for k in ("NAME", "SECOND_NAME", "LAST_NAME")]
    name = " ".join(p for p in parts if p)
    if not name:
        row.warnings.append("no_name")
        name = f"Bitrix24 contact {row.id}"
    if len(name) > 200:
        row.warnings.append("truncated_name")
        name = name[:200]
    return name


def _with_owner(row: _Row, values: dict[str, Any], owners: dict[str, int] | None) -> dict[str, Any]:
    """`owner_id` from `ASSIGNED_BY_ID` when that portal user is one of our members (by e-mail);
    otherwise the owner is left as it is."""
    if owners:
        owner = owners.get(row.link("ASSIGNED_BY_ID") or "")
        if owner is not None:
            values["owner_id"] = owner
    return values


def map_contact(raw: dict[str, Any], owners: dict[str, int] | None = None) -> SyncRecord:
    row = _Row(raw)
    emails, phones = row.multi("EMAIL"), row.multi("PHONE")
    phone, phone_raw = _phone(row, phones)
    return row.record(
        "contact",
        _with_owner(
            row,
            {
                "full_name": _full_name(row),
                "email": _email(row, emails),
                "phone": phone,
                "phone_raw": phone_raw,
                "job_title": row.text("POST", limit=200),
                "company_external_id": row.link("COMPANY_ID"),
                "notes": row.text("COMMENTS"),
                "custom_fields": _extra(
                    row,
                    ("TYPE_ID", "SOURCE_ID", "ASSIGNED_BY_ID", "ORIGINATOR_ID", "ORIGIN_ID"),
                    {"emails": emails, "phones": phones},
                ),
            },
            owners,
        ),
    )


def _requisite(row: _Row, key: str, check: Any, warning: str, limit: int) -> str | None:
    requisite = row.raw.get("_REQUISITE")
    if not isinstance(requisite, dict):
        return None
    value = requisite.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise row.bad(f"requisite {key} must be a string")
    return flagged(value.strip(), key, check, warning, limit, row.warnings)


def map_company(raw: dict[str, Any], owners: dict[str, int] | None = None) -> SyncRecord:
    row = _Row(raw)
    title = row.text("TITLE", limit=300)
    if title is None:
        row.warnings.append("no_name")
        title = f"Bitrix24 company {row.id}"
    emails, phones, webs = row.multi("EMAIL"), row.multi("PHONE"), row.multi("WEB")
    phone, phone_raw = _phone(row, phones)
    inn = _requisite(row, "RQ_INN", validate_inn, "invalid_inn", 12)
    website = first_work(webs)
    return row.record(
        "company",
        _with_owner(
            row,
            {
                "name": title,
                "kind": "sole_proprietor" if inn is not None and len(inn) == 12 else "legal_entity",
                "inn": inn,
                "kpp": _requisite(row, "RQ_KPP", validate_kpp, "invalid_kpp", 9),
                "ogrn": _requisite(row, "RQ_OGRN", validate_ogrn, "invalid_ogrn", 15),
                "email": _email(row, emails),
                "phone": phone or (phone_raw[:32] if phone_raw else None),
                "website": website[:300] if website else None,
                "industry": row.text("INDUSTRY", limit=200),
                "notes": row.text("COMMENTS"),
                "custom_fields": _extra(
                    row,
                    ("COMPANY_TYPE", "ASSIGNED_BY_ID", "ORIGINATOR_ID", "ORIGIN_ID"),
                    {"emails": emails, "phones": phones, "webs": webs},
                ),
            },
            owners,
        ),
    )


def map_deal(raw: dict[str, Any], stages: StageInfo, owners: dict[str, int] | None = None) -> SyncRecord:
    row = _Row(raw)
    title = row.text("TITLE", limit=300) or f"Bitrix24 deal {row.id}"
    code = row.text("STAGE_ID")
    if code is None:
        raise row.bad("STAGE_ID is missing")
    key = stages.keys.get(code)
    if key is None:
        raise row.bad(f"stage {code} is not mapped to a stage of pipeline {stages.pipeline_id}")
    semantic = (row.text("STAGE_SEMANTIC_ID") or stages.semantics.get(code) or "P").upper()
    status = {"S": "won", "F": "lost"}.get(semantic)
    if status is None:
        status = "new" if code == stages.first else "in_progress"
    closed_at: datetime | None = None
    if status in ("won", "lost"):
        closed_at = row.moment("CLOSEDATE") or row.moment("DATE_MODIFY")
    currency = (row.text("CURRENCY_ID") or "RUB").upper()
    if len(currency) != 3:
        raise row.bad("CURRENCY_ID must be a 3-letter code")
    return row.record(
        "deal",
        _with_owner(
            row,
            {
                "title": title,
                "amount": row.money("OPPORTUNITY") or Decimal("0.00"),
                "currency": currency,
                "pipeline_id": stages.pipeline_id,
                "stage": key,
                "status": status,
                "closed_at": closed_at,
                "lost_reason": stages.names.get(code) if status == "lost" else None,
                "expected_close_date": row.day("CLOSEDATE"),
                "contact_external_id": row.link("CONTACT_ID"),
                "company_external_id": row.link("COMPANY_ID"),
                "notes": row.text("COMMENTS"),
                "custom_fields": _extra(
                    row,
                    (
                        "CATEGORY_ID",
                        "STAGE_ID",
                        "TYPE_ID",
                        "SOURCE_ID",
                        "ASSIGNED_BY_ID",
                        "ORIGINATOR_ID",
                        "ORIGIN_ID",
                    ),
                    {},
                ),
            },
            owners,
        ),
    )


def deleted_record(target: str, external_id: str) -> SyncRecord:
    """A record the portal no longer has (not found on a targeted read)."""
    return SyncRecord(target=target, external_id=external_id, values={}, deleted=True)
