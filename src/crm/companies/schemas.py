from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field

from crm.core.schemas import InputModel, LenientEmail, ReadModel
from crm.core.validators import Inn, Kpp, Ogrn
from crm.deals.schemas import DealSummaryRead
from crm.records.schemas import PartyFields, PartyRead, example, patch_of, replace_of


def check_website(value: str) -> str:
    """An http(s) address, with or without the scheme (`romashka.ru`, `https://romashka.ru/about`);
    kept as typed. Other schemes (`javascript:`, `file:`) are refused: clients render it as a link."""
    try:
        parts = urlsplit(value if "://" in value else f"https://{value}")
        ok = parts.scheme in ("http", "https") and "." in (parts.hostname or "") and parts.port != 0
    except ValueError:  # e.g. an unclosed IPv6 bracket or a port that is not a number
        ok = False
    if not ok or any(c.isspace() for c in value):
        raise ValueError("website must be an http(s) address such as https://example.com")
    return value


Website = Annotated[str, Field(max_length=300), AfterValidator(check_website)]

CompanyKind = Literal["legal_entity", "sole_proprietor", "individual", "nonprofit"]

_KIND = "Default from the INN: 10 digits → `legal_entity`, 12 → `sole_proprietor`; `legal_entity` without one"
_INN = "10 digits (legal entities, nonprofits) or 12 (sole proprietors, individuals) with valid check digits"
_OGRN = "13 digits (OGRN: legal entities, nonprofits) or 15 (OGRNIP: sole proprietors, individuals)"


class CompanyName(InputModel):
    name: str = Field(min_length=1, max_length=300)


class CompanyDetails(InputModel):
    """A company's own fields of a POST or PUT body."""

    kind: CompanyKind | None = Field(default=None, description=_KIND)
    inn: Inn | None = Field(default=None, description=_INN)
    kpp: Kpp | None = None
    ogrn: Ogrn | None = Field(default=None, description=_OGRN)
    website: Website | None = None
    industry: str | None = Field(default=None, max_length=200)
    email: LenientEmail | None = None
    phone: str | None = Field(default=None, max_length=32, description="Any common format; stored as E.164")


class CompanyCreate(CompanyName, PartyFields, CompanyDetails):
    model_config = example("CompanyCreate")


CompanyReplace = replace_of(
    CompanyCreate,
    "CompanyReplace",
    "PUT: every editable field; an omitted one is cleared (`kind` defaults from the INN again).",
)


CompanyUpdate = patch_of(
    "CompanyUpdate",
    CompanyName,
    CompanyDetails,
    PartyFields,
    doc="PATCH: only the fields sent change. `kind` and `inn` must fit each other afterwards.",
)


class CompanyReadDetails(ReadModel):
    id: int
    name: str
    kind: str
    inn: str | None
    kpp: str | None
    ogrn: str | None
    website: str | None
    industry: str | None
    email: str | None
    phone: str | None


class CompanyRead(PartyRead, CompanyReadDetails):
    pass


class CompanyDealRead(DealSummaryRead):
    """A deal of the company, as `GET /companies/{id}/deals` lists it."""

    version: int
    created_at: datetime
    updated_at: datetime
