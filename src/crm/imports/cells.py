"""Cell parsers: text from a spreadsheet cell to the value a field stores, with the API's validators.

Each raises ValueError with a message for the row's error list."""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from pydantic import TypeAdapter, ValidationError

from crm.companies.schemas import check_website
from crm.core.schemas import normalize_email
from crm.core.validators import (
    MoneyIn,
    normalize_phone,
    validate_currency,
    validate_inn,
    validate_kpp,
    validate_ogrn,
)
from crm.models import CustomField

_MONEY = TypeAdapter(MoneyIn)
_SPACES = re.compile(r"[\s\u00a0\u202f']")


def text(value: str, max_length: int) -> str:
    if len(value) > max_length:
        raise ValueError(f"at most {max_length} characters")
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    return value


_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")


@lru_cache(maxsize=4096)
def _email_domain(domain: str) -> str:
    return normalize_email(f"a@{domain}", allow_special_use=True).partition("@")[2]


def email(value: str) -> str:
    """The API's email rule, lower-cased. A plain ASCII address checks its local part here and its
    domain once per import (cached); anything else goes through the full validator."""
    if len(value) > 320:
        raise ValueError("at most 320 characters")
    local, at, domain = value.rpartition("@")
    if at and len(local) <= 64 and len(value) <= 254 and domain.isascii() and _DOT_ATOM.fullmatch(local):
        return f"{local.lower()}@{_email_domain(domain)}"
    return normalize_email(value, allow_special_use=True)


_PHONE_SEPARATORS = re.compile(r"[\s()-]")
_RU_INTERNATIONAL = re.compile(r"\+7[3-9]\d{9}")
_RU_TRUNK = re.compile(r"8[3-9]\d{9}")
_RU_MOBILE = re.compile(r"9\d{9}")


def phone(value: str) -> str:
    """E.164 (`+79213451948`, default region RU). Common Russian spellings (`+7 …`, `8 (…) …`, ten
    digits of a mobile number) are rewritten directly, with the result `phonenumbers` gives them;
    every other form is parsed by `phonenumbers`."""
    if len(value) > 32:
        raise ValueError("at most 32 characters")
    digits = _PHONE_SEPARATORS.sub("", value)
    if _RU_INTERNATIONAL.fullmatch(digits):
        return digits
    if _RU_TRUNK.fullmatch(digits):
        return f"+7{digits[1:]}"
    if _RU_MOBILE.fullmatch(digits):
        return f"+7{digits}"
    return normalize_phone(value)


def money(value: str) -> Decimal:
    """`150000`, `150000.50`, `150 000,50` → Decimal with 2 places, ≥ 0."""
    cleaned = _SPACES.sub("", value)
    if "," in cleaned and "." not in cleaned:
        cleaned = cleaned.replace(",", ".")
    try:
        amount: Decimal = _MONEY.validate_python(cleaned)
    except ValidationError as exc:
        raise ValueError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
    return amount


def integer(value: str, minimum: int, maximum: int) -> int:
    try:
        number = int(_SPACES.sub("", value))
    except ValueError:
        raise ValueError("expected a whole number") from None
    if not minimum <= number <= maximum:
        raise ValueError(f"expected a number from {minimum} to {maximum}")
    return number


def inn(value: str) -> str:
    return validate_inn(value)


def kpp(value: str) -> str:
    return validate_kpp(value)


def ogrn(value: str) -> str:
    return validate_ogrn(value)


def currency(value: str) -> str:
    return validate_currency(value)


def website(value: str) -> str:
    return check_website(text(value, 300))


def day(value: str) -> date:
    """An ISO date (`2026-11-23`, a timestamp's date part) or `23.11.2026`."""
    try:
        if re.fullmatch(r"\d{1,2}\.\d{1,2}\.\d{4}", value):
            return datetime.strptime(value, "%d.%m.%Y").date()
        return date.fromisoformat(value[:10])
    except ValueError:
        raise ValueError("expected a date YYYY-MM-DD or DD.MM.YYYY") from None


def tags(value: str) -> list[str]:
    """Comma-separated; each 1..50 characters, at most 50, duplicates dropped."""
    items = list(dict.fromkeys(t.strip() for t in value.split(",") if t.strip()))
    if len(items) > 50:
        raise ValueError("at most 50 tags")
    for item in items:
        if len(item) > 50:
            raise ValueError("a tag has at most 50 characters")
    return items


def choice(value: str, allowed: tuple[str, ...]) -> str:
    normalized = value.strip().casefold().replace(" ", "_").replace("-", "_")
    if normalized not in allowed:
        raise ValueError(f"expected one of {', '.join(allowed)}")
    return normalized


def custom_value(definition: CustomField, value: str) -> Any:
    """A custom field cell in the field's type (`number`, `boolean`, `date`, `select`, ...)."""
    kind = definition.type
    if kind == "text":
        return text(value, 10_000)
    if kind == "number":
        cleaned = _SPACES.sub("", value).replace(",", ".")
        try:
            return int(cleaned)
        except ValueError:
            pass
        try:
            number = float(cleaned)
        except ValueError:
            raise ValueError("expected a number") from None
        if not math.isfinite(number):
            raise ValueError("expected a number")
        return int(number) if number.is_integer() else number
    if kind == "boolean":
        lowered = value.casefold()
        if lowered in ("true", "yes", "1", "да"):
            return True
        if lowered in ("false", "no", "0", "нет"):
            return False
        raise ValueError("expected true or false")
    if kind == "date":
        return day(value).isoformat()
    if kind == "select":
        if value not in definition.options:
            raise ValueError(f"expected one of {definition.options}")
        return value
    if kind == "multiselect":
        items = [v.strip() for v in value.split(",") if v.strip()]
        if any(v not in definition.options for v in items):
            raise ValueError(f"expected a comma-separated list of {definition.options}")
        return list(dict.fromkeys(items))
    raise ValueError("unknown field type")  # pragma: no cover
