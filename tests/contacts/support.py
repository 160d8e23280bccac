"""Helpers for the tests of CRM records (contacts, companies): problems, stored rows, factories."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from httpx import Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.core.models import Base
from crm.models import Activity, Company, Contact, CustomField, Deal, Organization, Pipeline
from tests.factories import Actor, Factory

M = TypeVar("M", bound=Base)
_seq = itertools.count(1)


def assert_problem(response: Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["detail"]
    return body


def error_locs(response: Response) -> list[list[Any]]:
    """`loc` of every item of a 422's `errors`."""
    return [item["loc"] for item in response.json().get("errors", [])]


async def team(factory: Factory, *roles: str) -> tuple[Organization, dict[str, Actor]]:
    """An organization with one logged-in actor per role."""
    org = await factory.org()
    return org, {role: await factory.actor(role, org=org) for role in roles}


async def stored(db: AsyncSession, model: type[M], row_id: int) -> M | None:
    """The row as it is in the database now (not the session's cached copy)."""
    result = await db.execute(
        select(model).where(model.id == row_id).execution_options(populate_existing=True)  # type: ignore[attr-defined]
    )
    return result.scalar_one_or_none()


async def count(db: AsyncSession, model: type[Base], **where: Any) -> int:
    stmt = select(func.count()).select_from(model)
    for name, value in where.items():
        stmt = stmt.where(getattr(model, name) == value)
    return int(await db.scalar(stmt) or 0)


async def activities(db: AsyncSession, entity_type: str, entity_id: int) -> Sequence[Activity]:
    """The record's activities, oldest first."""
    result = await db.execute(
        select(Activity)
        .where(Activity.entity_type == entity_type, Activity.entity_id == entity_id)
        .order_by(Activity.id)
        .execution_options(populate_existing=True)
    )
    return result.scalars().all()


# Rows stored directly (for states the API cannot make, such as synced rows or old timestamps) ---


async def make_contact(db: AsyncSession, org_id: int, **overrides: Any) -> Contact:
    n = next(_seq)
    values: dict[str, Any] = {"organization_id": org_id, "full_name": f"Contact {n}"}
    values.update(overrides)
    contact = Contact(**values)
    db.add(contact)
    await db.flush()
    return contact


async def make_company(db: AsyncSession, org_id: int, **overrides: Any) -> Company:
    n = next(_seq)
    values: dict[str, Any] = {"organization_id": org_id, "name": f"Company {n}"}
    values.update(overrides)
    company = Company(**values)
    db.add(company)
    await db.flush()
    return company


async def make_deal(db: AsyncSession, org_id: int, **overrides: Any) -> Deal:
    """A deal in a fresh pipeline of the organization (stage `lead`, status `new` unless given)."""
    pipeline = Pipeline(organization_id=org_id, name=f"Pipeline {next(_seq)}")
    db.add(pipeline)
    await db.flush()
    values: dict[str, Any] = {
        "organization_id": org_id,
        "title": f"Deal {next(_seq)}",
        "pipeline_id": pipeline.id,
        "stage": "lead",
        "amount": Decimal("1000.00"),
    }
    values.update(overrides)
    deal = Deal(**values)
    db.add(deal)
    await db.flush()
    return deal


async def make_custom_field(
    db: AsyncSession,
    org_id: int,
    entity: str,
    key: str,
    type_: str,
    *,
    options: list[str] | None = None,
    required: bool = False,
) -> CustomField:
    field = CustomField(
        organization_id=org_id,
        entity=entity,
        key=key,
        label=key.title(),
        type=type_,
        options=options or [],
        required=required,
    )
    db.add(field)
    await db.flush()
    return field


def at(iso: str) -> datetime:
    return datetime.fromisoformat(iso)
