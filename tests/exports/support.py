"""Helpers for the export tests: records made over HTTP (projects and dictionaries stored directly),
exported files parsed back with `csv` and `openpyxl`, and what the database holds as cell text."""

from __future__ import annotations

import csv
import io
import itertools
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from httpx import AsyncClient, Response
from openpyxl import load_workbook
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.exports.cells import unescape_cell
from crm.models import Company, Contact, Deal, District, Industry, Pipeline, Project, User
from tests.factories import Actor

EXPORTS = "/api/v1/exports"
ENTITIES = ("contacts", "companies", "deals", "projects")
MONEY_COLUMNS = {"amount", "own_funds_amount", "requested_support_amount", "tax_revenue_amount"}
_seq = itertools.count(1)


def inn10(n: int | None = None) -> str:
    """A valid 10-digit INN (check digit computed)."""
    body = f"{(n if n is not None else next(_seq) * 7919) % 10**9:09d}"
    weights = (2, 4, 10, 3, 5, 9, 4, 6, 8)
    check = sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11 % 10
    return body + str(check)


def org_of(actor: Actor) -> int:
    assert actor.org_id is not None
    return actor.org_id


async def post(client: AsyncClient, actor: Actor, path: str, **body: Any) -> dict[str, Any]:
    response = await client.post(f"/api/v1/{path}", json=body, headers=actor.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def export(client: AsyncClient, actor: Actor, entity: str, fmt: str = "csv", **params: Any) -> Response:
    response = await client.get(
        f"{EXPORTS}/{entity}", params={"format": fmt, **params}, headers=actor.headers
    )
    return response


def csv_table(response: Response, *, raw: bool = False) -> tuple[list[str], list[dict[str, str]]]:
    """Headers and rows of a CSV export; cells un-escaped unless `raw`."""
    assert response.status_code == 200, response.text
    assert response.content.startswith(b"\xef\xbb\xbf"), "a CSV export starts with a UTF-8 BOM"
    reader = csv.reader(io.StringIO(response.content.decode("utf-8-sig"), newline=""))
    headers = next(reader)
    rows = [
        dict(zip(headers, (cell if raw else unescape_cell(cell) for cell in record), strict=True))
        for record in reader
    ]
    return headers, rows


def xlsx_values(response: Response) -> tuple[list[str], list[dict[str, Any]]]:
    """Headers and typed cell values of an XLSX export."""
    assert response.status_code == 200, response.text
    workbook = load_workbook(io.BytesIO(response.content), read_only=True)
    sheet = workbook.worksheets[0]
    records = list(sheet.iter_rows(values_only=True))
    workbook.close()
    headers = [str(h) for h in records[0]]
    return headers, [dict(zip(headers, record, strict=True)) for record in records[1:]]


def xlsx_table(response: Response) -> tuple[list[str], list[dict[str, str]]]:
    """Headers and rows of an XLSX export as the text the CSV export would hold."""
    headers, records = xlsx_values(response)

    def text(header: str, value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, datetime):
            return value.date().isoformat()
        if isinstance(value, (int, float)) and header in MONEY_COLUMNS:
            return f"{Decimal(repr(value)):.2f}"
        if isinstance(value, str):
            return unescape_cell(value)
        return str(value)

    return headers, [{h: text(h, v) for h, v in record.items()} for record in records]


def table(response: Response, fmt: str) -> tuple[list[str], list[dict[str, str]]]:
    return xlsx_table(response) if fmt == "xlsx" else csv_table(response)


# What the database holds, as the text of each exported cell (computed here, independently of the
# export code).


def _s(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


async def _email(db: AsyncSession, user_id: int | None) -> str | None:
    if user_id is None:
        return None
    email: str | None = await db.scalar(select(User.email).where(User.id == user_id))
    return email


async def _company(db: AsyncSession, company_id: int | None) -> Company | None:
    if company_id is None:
        return None
    company = await db.get(Company, company_id, populate_existing=True)
    return company if company is not None and company.deleted_at is None else None


def _custom(document: dict[str, Any], keys: list[str]) -> dict[str, str]:
    return {f"cf.{k}": _s(document.get(k)) for k in keys}


async def stored_rows(
    db: AsyncSession, entity: str, ids: list[int], cf_keys: list[str]
) -> list[dict[str, str]]:
    """The expected cells of the given records, in the given order."""
    out = []
    for row_id in ids:
        if entity == "contacts":
            c = await db.get(Contact, row_id, populate_existing=True)
            assert c is not None
            company = await _company(db, c.company_id)
            values: dict[str, Any] = {
                "id": c.id,
                "full_name": c.full_name,
                "email": c.email,
                "phone": c.phone,
                "company_inn": company.inn if company else None,
                "job_title": c.job_title,
                "age": c.age,
                "gender": c.gender,
                "country": c.country,
                "address": c.address,
                "tags": c.tags or None,
                "owner_email": await _email(db, c.owner_id),
                "notes": c.notes,
            }
            document, created, updated = c.custom_fields, c.created_at, c.updated_at
        elif entity == "companies":
            co = await db.get(Company, row_id, populate_existing=True)
            assert co is not None
            values = {
                "id": co.id,
                "name": co.name,
                "kind": co.kind,
                "inn": co.inn,
                "kpp": co.kpp,
                "ogrn": co.ogrn,
                "website": co.website,
                "industry": co.industry,
                "email": co.email,
                "phone": co.phone,
                "address": co.address,
                "tags": co.tags or None,
                "owner_email": await _email(db, co.owner_id),
                "notes": co.notes,
            }
            document, created, updated = co.custom_fields, co.created_at, co.updated_at
        elif entity == "deals":
            d = await db.get(Deal, row_id, populate_existing=True)
            assert d is not None
            company = await _company(db, d.company_id)
            contact = await db.get(Contact, d.contact_id) if d.contact_id else None
            values = {
                "id": d.id,
                "title": d.title,
                "amount": d.amount,
                "currency": d.currency,
                "pipeline": await db.scalar(select(Pipeline.name).where(Pipeline.id == d.pipeline_id)),
                "stage": d.stage,
                "status": d.status,
                "expected_close_date": d.expected_close_date,
                "lost_reason": d.lost_reason,
                "contact_email": contact.email if contact and contact.deleted_at is None else None,
                "company_inn": company.inn if company else None,
                "owner_email": await _email(db, d.owner_id),
                "notes": d.notes,
            }
            document, created, updated = d.custom_fields, d.created_at, d.updated_at
        else:
            p = await db.get(Project, row_id, populate_existing=True)
            assert p is not None
            client = await _company(db, p.client_id)
            values = {
                "id": p.id,
                "external_code": p.external_code,
                "name": p.name,
                "description": p.description,
                "client_inn": client.inn if client else None,
                "client_name": client.name if client else None,
                "client_kind": client.kind if client else None,
                "industry": await db.scalar(select(Industry.name).where(Industry.id == p.industry_id)),
                "district": await db.scalar(select(District.name).where(District.id == p.district_id)),
                "city": p.city,
                "address": p.address,
                "own_funds_amount": p.own_funds_amount,
                "requested_support_amount": p.requested_support_amount,
                "jobs_count": p.jobs_count,
                "tax_revenue_amount": p.tax_revenue_amount,
                "status": p.status,
                "curator_email": await _email(db, p.curator_id),
            }
            document, created, updated = p.custom_fields, p.created_at, p.updated_at
        row = {k: _s(v) for k, v in values.items()}
        row.update(_custom(document, cf_keys))
        row["created_at"] = _s(created)
        row["updated_at"] = _s(updated)
        out.append(row)
    return out
