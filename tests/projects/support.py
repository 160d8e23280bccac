"""Helpers of the project tests: records made over HTTP or stored directly, and fresh reads."""

from __future__ import annotations

import itertools
from datetime import date
from decimal import Decimal
from typing import Any

from httpx import AsyncClient
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import (
    Activity,
    Company,
    District,
    Industry,
    Project,
    ProjectStatusHistory,
    SupportDecision,
    SupportMeasure,
)
from tests.factories import Actor, Factory

PROJECTS = "/api/v1/projects"
_seq = itertools.count(1)
DICTIONARIES = "/api/v1/dictionaries"


def org_of(actor: Actor) -> int:
    assert actor.org_id is not None
    return actor.org_id


async def team(factory: Factory, *roles: str) -> dict[str, Actor]:
    """One actor per role, all in one fresh organization."""
    org = await factory.org()
    return {role: await factory.actor(role, org=org) for role in roles}


async def create_project(client: AsyncClient, actor: Actor, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "Гостиничный комплекс")
    response = await client.post(PROJECTS, json=body, headers=actor.headers)
    assert response.status_code == 201, response.text
    project: dict[str, Any] = response.json()
    return project


async def make_company(db: AsyncSession, org_id: int, name: str = "ООО Ромашка", **fields: Any) -> Company:
    company = Company(organization_id=org_id, name=name, **fields)
    db.add(company)
    await db.flush()
    await db.commit()
    return company


async def make_industry(db: AsyncSession, org_id: int, name: str = "Туризм") -> Industry:
    industry = Industry(organization_id=org_id, name=name)
    db.add(industry)
    await db.flush()
    await db.commit()
    return industry


async def make_district(db: AsyncSession, org_id: int, name: str = "Выборгский район") -> District:
    district = District(organization_id=org_id, name=name)
    db.add(district)
    await db.flush()
    await db.commit()
    return district


async def complete_project(
    client: AsyncClient, db: AsyncSession, actor: Actor, **body: Any
) -> dict[str, Any]:
    """A draft with everything `draft → submitted` needs."""
    org_id = org_of(actor)
    company = await make_company(db, org_id)
    industry = await make_industry(db, org_id, f"Туризм {next(_seq)}")
    body = {
        "client_id": company.id,
        "industry_id": industry.id,
        "own_funds_amount": "1000000.00",
        "requested_support_amount": "500000.00",
        **body,
    }
    return await create_project(client, actor, **body)


async def set_status(db: AsyncSession, project_id: int, status: str, frozen_from: str | None = None) -> None:
    """Put a project in a status directly (test setup, no rules)."""
    await db.execute(
        update(Project).where(Project.id == project_id).values(status=status, frozen_from=frozen_from)
    )
    await db.commit()


async def make_support(
    db: AsyncSession, org_id: int, project_id: int, *, status: str = "requested", decision: str | None = None
) -> SupportMeasure:
    measure = SupportMeasure(
        organization_id=org_id,
        project_id=project_id,
        type="finance",
        unit="RUB",
        amount=Decimal("100000.00"),
        status=status,
    )
    db.add(measure)
    await db.flush()
    if decision is not None:
        db.add(
            SupportDecision(
                organization_id=org_id,
                support_id=measure.id,
                decision_type="interdepartmental_commission",
                decision_date=date(2026, 11, 1),
                protocol_number="МВК-1",
                result=decision,
            )
        )
        await db.flush()
    await db.commit()
    return measure


async def stored_project(db: AsyncSession, project_id: int) -> Project:
    db.expunge_all()
    return (await db.execute(select(Project).where(Project.id == project_id))).scalar_one()


async def history_rows(db: AsyncSession, project_id: int) -> list[tuple[str | None, str, str | None]]:
    """(from, to, comment) of a project's status history, oldest first."""
    rows = await db.execute(
        select(ProjectStatusHistory.from_status, ProjectStatusHistory.to_status, ProjectStatusHistory.comment)
        .where(ProjectStatusHistory.project_id == project_id)
        .order_by(ProjectStatusHistory.id)
    )
    return [tuple(r) for r in rows.all()]  # type: ignore[misc]


async def activities(db: AsyncSession, project_id: int) -> list[Activity]:
    db.expunge_all()
    rows = await db.execute(
        select(Activity)
        .where(Activity.entity_type == "project", Activity.entity_id == project_id)
        .order_by(Activity.id)
    )
    return list(rows.scalars().all())


async def project_count(db: AsyncSession, org_id: int) -> int:
    stmt = select(func.count()).select_from(Project).where(Project.organization_id == org_id)
    return int(await db.scalar(stmt) or 0)


def if_match(actor: Actor, version: int) -> dict[str, str]:
    return {**actor.headers, "If-Match": f'"{version}"'}
