"""Companies: matched on `inn` among the live companies the INN's unique index covers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from crm.companies.schemas import CompanyCreate
from crm.companies.service import CREATED_FIELDS, check_identifiers, kind_from_inn
from crm.imports import cells
from crm.imports.fields import COMPANIES
from crm.imports.handlers.base import (
    UNIQUE_SOURCE_LIST,
    Handler,
    Parser,
    Row,
    choice_of,
    compared_of,
    text_of,
)
from crm.models import Company
from crm.models.company import UNIQUE_SOURCES


async def companies_by_inn(db: AsyncSession, organization_id: int, inns: Iterable[str]) -> dict[str, int]:
    """Live companies by INN (the uniquely indexed one first when a synced duplicate exists)."""
    result = await db.execute(
        select(Company.inn, Company.id)
        .where(
            Company.organization_id == organization_id,
            Company.deleted_at.is_(None),
            Company.inn.in_(list(inns)),
        )
        .order_by(Company.source.in_(UNIQUE_SOURCE_LIST).desc(), Company.id)
    )
    out: dict[str, int] = {}
    for inn, company_id in result.tuples():
        if inn is not None:
            out.setdefault(inn, company_id)
    return out


class CompanyHandler(Handler):
    spec = COMPANIES
    model = Company
    not_null = ("name",)
    compared = compared_of(CREATED_FIELDS)
    parsers: ClassVar[dict[str, Parser]] = {
        "name": text_of(CompanyCreate, "name"),
        "kind": choice_of(CompanyCreate, "kind"),
        "inn": cells.inn,
        "kpp": cells.kpp,
        "ogrn": cells.ogrn,
        "website": cells.website,
        "industry": text_of(CompanyCreate, "industry"),
        "email": cells.email,
        "phone": cells.phone,
        "address": text_of(CompanyCreate, "address"),
        "tags": cells.tags,
        "owner_email": cells.email,
        "notes": text_of(CompanyCreate, "notes"),
    }

    def check(self, number: int, values: dict[str, Any]) -> bool:
        kind = values.get("kind")
        if kind is None:
            return True
        return self.follows(number, lambda: check_identifiers(kind, values.get("inn"), values.get("ogrn")))

    async def resolve(self, db: AsyncSession, rows: list[Row]) -> list[Row]:
        kept: list[Row] = []
        for row in rows:
            values = row.values
            record = {k: v for k, v in values.items() if k in self.compared}
            if "tags" in record:
                record["tags"] = record["tags"] or []
            if "kind" in record and record["kind"] is None:
                record["kind"] = kind_from_inn(values.get("inn"))
            if not self.user(row.number, "owner_email", values, "owner_id", record):
                continue
            row.record = record
            kept.append(row)
        return kept

    def creatable(self, row: Row) -> bool:
        if row.record.get("kind") is None:
            row.record["kind"] = kind_from_inn(row.record.get("inn"))
        return super().creatable(row)

    async def existing(self, db: AsyncSession, keys: list[Any]) -> dict[Any, dict[str, Any]]:
        return await self.live_unique(db, Company.inn, Company.inn, keys)

    async def insert(self, db: AsyncSession, rows: list[Row]) -> None:
        defaults: dict[str, Any] = {
            "source": "import",
            **dict.fromkeys(self.compared),
            "tags": [],
        }
        await self.insert_keyed(
            db,
            rows,
            defaults,
            Company.inn,
            [Company.organization_id, Company.inn],
            text(f"deleted_at IS NULL AND inn IS NOT NULL AND {UNIQUE_SOURCES}"),
        )
