"""Shared schema pieces: base models, the list envelope, common field types."""

from __future__ import annotations

import functools
import re
import types
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar, Union, get_args, get_origin

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from fastapi import Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


def _leaf_types(annotation: Any) -> set[Any]:
    """The types a field annotation admits (through `Annotated`, unions and `Optional`)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _leaf_types(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return set().union(*(_leaf_types(arg) for arg in get_args(annotation)))
    return {annotation}


def _number_kind(annotation: Any) -> tuple[str, str] | None:
    """The error for a boolean sent to a number field (pydantic would read `true` as 1)."""
    leaves = _leaf_types(annotation)
    if bool in leaves:
        return None
    if int in leaves:
        return ("int_type", "Input should be a valid integer")
    if float in leaves:
        return ("float_type", "Input should be a valid number")
    return None


class InputModel(BaseModel):
    """Request bodies: unknown fields are refused (422) so typos never pass silently, and so is
    text PostgreSQL cannot store (a NUL character, an unpaired surrogate) instead of failing there."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    #: Fields taking a number but not a boolean → their error (JSON `true` is not the number 1).
    _numbers: ClassVar[dict[str, tuple[str, str]]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._numbers = {
            name: kind for name, field in cls.model_fields.items() if (kind := _number_kind(field.annotation))
        }

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name in cls._numbers:
            raise PydanticCustomError(*cls._numbers[info.field_name])
        return value

    @model_validator(mode="before")
    @classmethod
    def _storable_text(cls, data: Any) -> Any:
        where = _unstorable_text(data)
        if where is not None:
            where = where.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\x00") or "text"
            raise ValueError(f"{where}: NUL characters and unpaired surrogates are not allowed")
        return data


def _unstorable_text(value: Any, path: str = "") -> str | None:
    """The path of the first string (key or value) PostgreSQL would refuse, if any."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and _unstorable_text(key) is not None:
                return where
            found = _unstorable_text(item, where)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _unstorable_text(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


async def storable_query(request: Request) -> None:
    """App-wide dependency: a query parameter (name or value) PostgreSQL could not store — a NUL
    character — is a 422 before any handler runs, so no query ever fails on it half-way (a streamed
    export would already have sent its 200)."""
    if b"%00" not in request.scope["query_string"] and b"\x00" not in request.scope["query_string"]:
        return
    errors = [
        {
            "loc": ("query", name.replace("\x00", "\\x00")),
            "msg": "NUL characters are not allowed",
            "type": "value_error",
        }
        for name, value in request.query_params.multi_items()
        if _unstorable_text(name) is not None or _unstorable_text(value) is not None
    ]
    if errors:
        raise RequestValidationError(errors)


class ReadModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


def from_row(model: type[M], row: object, **values: Any) -> M:
    """`model` filled from the attributes of `row` named like its fields; `values` are taken instead
    of the row's (a computed or renamed field)."""
    for name in model.model_fields:
        if name not in values and hasattr(row, name):
            values[name] = getattr(row, name)
    return model.model_validate(values)


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class PageParams(BaseModel):
    limit: int = 50
    offset: int = 0

    def page(self, items: Sequence[Any], total: int) -> Page[Any]:
        """The list envelope of one page of `items` out of `total`."""
        return Page(items=list(items), total=total, limit=self.limit, offset=self.offset)


MAX_LIMIT = 200
MAX_OFFSET = 10_000_000


def _mixed_paging(names: list[str]) -> RequestValidationError:
    return RequestValidationError(
        [
            {
                "loc": ("query", name),
                "msg": "Use either page and page_size or offset and limit, not both",
                "type": "paging_mixed",
                "input": None,
            }
            for name in names
        ]
    )


async def page_params(
    limit: Annotated[
        int | None, Query(ge=1, le=MAX_LIMIT, description="Page size, 1..200 (default 50)")
    ] = None,
    offset: Annotated[int | None, Query(ge=0, le=MAX_OFFSET, description="Rows to skip (default 0)")] = None,
    page: Annotated[
        int | None, Query(ge=1, le=MAX_OFFSET, description="1-based page number, instead of `offset`")
    ] = None,
    page_size: Annotated[
        int | None, Query(ge=1, le=MAX_LIMIT, description="Rows per page, 1..200, instead of `limit`")
    ] = None,
) -> PageParams:
    """`limit`/`offset`, or `page`/`page_size` for clients that count pages (§20.2); mixing → 422.
    The envelope says `limit` and `offset` either way."""
    if page is not None or page_size is not None:
        mixed = [name for name, value in (("limit", limit), ("offset", offset)) if value is not None]
        if mixed:
            raise _mixed_paging(mixed)
        size = page_size or 50
        skip = ((page or 1) - 1) * size
        if skip > MAX_OFFSET:
            raise RequestValidationError(
                [
                    {
                        "loc": ("query", "page"),
                        "msg": f"page × page_size may skip at most {MAX_OFFSET} rows",
                        "type": "less_than_equal",
                        "input": page,
                    }
                ]
            )
        return PageParams(limit=size, offset=skip)
    return PageParams(limit=50 if limit is None else limit, offset=0 if offset is None else offset)


#: The paging of a list route, for its handler's signature.
Paging = Annotated[PageParams, Depends(page_params)]


#: A dot-atom local part of plain ASCII (RFC 5322 `atext` only), which email-validator takes as it is.
_PLAIN_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


@functools.lru_cache(maxsize=4096)
def _checked_domain(domain: str) -> str | None:
    """The domain as email-validator normalizes it, or None when it refuses it (checked once per
    domain: it is most of the check's cost, and a domain's verdict does not depend on the mailbox)."""
    try:
        return validate_email(f"a@{domain}", check_deliverability=False).normalized.rpartition("@")[2]
    except EmailNotValidError:
        return None


def normalize_email(value: str, *, allow_special_use: bool = False) -> str:
    """Validate syntax (no DNS) and return the address in lower case."""
    local, _, domain = value.rpartition("@")
    if len(value) <= 254 and len(local) <= 64 and _PLAIN_LOCAL.fullmatch(local):
        normalized = _checked_domain(domain)
        if normalized is not None:
            return f"{local}@{normalized}".lower()
    try:
        return validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        local, _, domain = value.rpartition("@")
        if allow_special_use and local and _is_special_use(domain):
            # `localhost` fails the "needs a period" rule before the special-use one: check the syntax
            # with a neutral TLD appended, then keep the special-use domain as given.
            try:
                checked = validate_email(f"{local}@{domain}.com", check_deliverability=False)
            except EmailNotValidError:
                raise ValueError(str(exc)) from None
            return checked.normalized.removesuffix(".com").lower()
        raise ValueError(str(exc)) from None


def _is_special_use(domain: str) -> bool:
    """`localhost`, `test`, `mail.local`, ...: the special-use names of RFC 6761 and friends."""
    name = domain.strip().lower()
    return any(name == s or name.endswith(f".{s}") for s in SPECIAL_USE_DOMAIN_NAMES)


_EMAIL_SCHEMA = WithJsonSchema({"type": "string", "format": "email", "maxLength": 320})

Email = Annotated[str, Field(max_length=320), AfterValidator(normalize_email), _EMAIL_SCHEMA]
LenientEmail = Annotated[
    str,
    Field(max_length=320),
    AfterValidator(lambda v: normalize_email(v, allow_special_use=True)),
    _EMAIL_SCHEMA,
]


def iso_z(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


def model_dump_changes(model: BaseModel) -> dict[str, Any]:
    """Only the fields the client actually sent (PATCH semantics)."""
    return model.model_dump(exclude_unset=True)


BIGINT_MAX = 9_223_372_036_854_775_807
#: A row id in a path: positive and within PostgreSQL's bigint (larger ones are 422, not 500).
Id = Annotated[int, Path(ge=1, le=BIGINT_MAX)]


def sort_param(*fields: str) -> Any:
    """A `sort` query parameter accepting `field` or `-field` for the allowed fields (else 422)."""
    values = tuple(v for f in fields for v in (f, f"-{f}"))
    return Annotated[
        Literal[values] | None,
        Query(
            description=f"One of {', '.join(fields)}; prefix with `-` for descending. Default: newest first."
        ),
    ]


def as_utc(value: datetime) -> datetime:
    """A timestamp in UTC; one without an offset is taken as UTC already."""
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:00:00-05:00
        raise ValueError("timestamp out of range") from None


#: A timestamp with time zone in a body or query; one without an offset is read as UTC (so that
#: two of them always compare).
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _iso_only(value: object) -> object:
    """Refuse numbers (epoch seconds) and other loose forms: dates are ISO 8601 text."""
    if isinstance(value, (datetime, date)):
        return value
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise ValueError("expected an ISO 8601 date (YYYY-MM-DD) or timestamp")
    return value


#: An ISO 8601 timestamp, in UTC (one without an offset is taken as UTC).
UtcDatetime = Annotated[datetime, BeforeValidator(_iso_only), AfterValidator(as_utc)]
#: An ISO 8601 date (`YYYY-MM-DD`).
IsoDate = Annotated[date, BeforeValidator(_iso_only)]
