"""Field rules shared by several features: phones, Russian company numbers, currencies, money."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Annotated, Any, Literal

import phonenumbers
import pycountry
from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer, WithJsonSchema

DEFAULT_REGION = "RU"


def normalize_phone(raw: str, region: str = DEFAULT_REGION) -> str:
    """E.164 form of a phone number (`+79213451948`); ValueError when it cannot be a phone."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {exc}") from None
    if not phonenumbers.is_possible_number(number):
        raise ValueError("not a possible phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _digits(value: str, lengths: tuple[int, ...], what: str) -> str:
    value = value.strip()
    if not value.isdigit() or len(value) not in lengths:
        allowed = " or ".join(str(n) for n in lengths)
        raise ValueError(f"{what} must be {allowed} digits")
    return value


def _checksum(digits: str, weights: tuple[int, ...]) -> int:
    return sum(int(d) * w for d, w in zip(digits, weights, strict=False)) % 11 % 10


def validate_inn(value: str) -> str:
    """Russian taxpayer number: 10 digits (organizations) or 12 (individuals) with check digits."""
    inn = _digits(value, (10, 12), "INN")
    if len(inn) == 10:
        ok = _checksum(inn, (2, 4, 10, 3, 5, 9, 4, 6, 8)) == int(inn[9])
    else:
        ok = _checksum(inn, (7, 2, 4, 10, 3, 5, 9, 4, 6, 8)) == int(inn[10]) and _checksum(
            inn, (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
        ) == int(inn[11])
    if not ok:
        raise ValueError("INN check digits do not match")
    return inn


def validate_kpp(value: str) -> str:
    kpp = value.strip().upper()
    if len(kpp) != 9 or not (kpp[:4].isdigit() and kpp[4:6].isalnum() and kpp[6:].isdigit()):
        raise ValueError("KPP must be 9 characters: 4 digits, 2 digits or letters, 3 digits")
    return kpp


def validate_ogrn(value: str) -> str:
    """OGRN (13 digits, organizations) or OGRNIP (15 digits, sole proprietors) with its check digit."""
    ogrn = _digits(value, (13, 15), "OGRN")
    body, check = int(ogrn[:-1]), int(ogrn[-1])
    modulus = 11 if len(ogrn) == 13 else 13
    if body % modulus % 10 != check:
        raise ValueError("OGRN check digit does not match")
    return ogrn


CURRENCIES = frozenset(c.alpha_3 for c in pycountry.currencies)


def validate_currency(value: str) -> str:
    code = value.strip().upper()
    if code not in CURRENCIES:
        raise ValueError("currency must be an ISO 4217 code such as RUB, USD, EUR")
    return code


def _to_money(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise ValueError("money is a number or a decimal string")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError("money is a number or a decimal string") from None
    if not amount.is_finite():
        raise ValueError("money must be a finite number")
    if amount.as_tuple().exponent < -2 and amount != amount.quantize(Decimal("0.01")):  # type: ignore[operator]
        raise ValueError("money has at most 2 decimal places")
    if abs(amount) >= Decimal("1e16"):
        raise ValueError("amount is too large")
    return amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _non_negative(value: Decimal) -> Decimal:
    if value < 0:
        raise ValueError("amount must not be negative")
    return value


def money_str(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):f}"


_MONEY_SCHEMA = WithJsonSchema(
    {
        "anyOf": [{"type": "string", "pattern": r"^-?\d{1,16}(\.\d{1,2})?$"}, {"type": "number"}],
        "description": "Decimal with 2 places; a number or a string in, a string out",
    }
)

#: Money in a request: a number or a decimal string, ≥ 0, 2 places; serialized as `"150000.00"`.
MoneyIn = Annotated[Decimal, BeforeValidator(_to_money), AfterValidator(_non_negative), _MONEY_SCHEMA]
MoneyOut = Annotated[
    Decimal,
    PlainSerializer(money_str, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "example": "150000.00"}),
]

Currency = Annotated[
    str,
    Field(min_length=3, max_length=3),
    AfterValidator(validate_currency),
    WithJsonSchema({"type": "string", "pattern": "^[A-Za-z]{3}$", "example": "RUB"}),
]
Inn = Annotated[
    str, AfterValidator(validate_inn), WithJsonSchema({"type": "string", "pattern": r"^\d{10}(\d{2})?$"})
]
Kpp = Annotated[
    str,
    AfterValidator(validate_kpp),
    WithJsonSchema({"type": "string", "pattern": r"^\d{4}[\dA-Z]{2}\d{3}$"}),
]
Ogrn = Annotated[
    str, AfterValidator(validate_ogrn), WithJsonSchema({"type": "string", "pattern": r"^\d{13}(\d{2})?$"})
]
Tag = Annotated[str, Field(min_length=1, max_length=50)]
Tags = Annotated[list[Tag], Field(max_length=50)]
SortDirection = Literal["asc", "desc"]
