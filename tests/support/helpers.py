"""Rows of the projects module made directly through the test session."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Activity, Project, SupportMeasure, SupportProgram, SupportProvider
from tests.factories import Actor

_seq = itertools.count(1)


def org_of(actor: Actor) -> int:
    assert actor.org_id is not None
    return actor.org_id


async def make_project(db: AsyncSession, organization_id: int, **fields: Any) -> Project:
    values: dict[str, Any] = {"name": f"Project {next(_seq)}", "status": "draft"}
    values.update(fields)
    project = Project(organization_id=organization_id, **values)
    db.add(project)
    await db.flush()
    return project


async def make_program(db: AsyncSession, organization_id: int, **fields: Any) -> SupportProgram:
    values: dict[str, Any] = {"name": f"Program {next(_seq)}"}
    values.update(fields)
    program = SupportProgram(organization_id=organization_id, **values)
    db.add(program)
    await db.flush()
    return program


async def make_provider(db: AsyncSession, organization_id: int, **fields: Any) -> SupportProvider:
    values: dict[str, Any] = {"name": f"Ministry {next(_seq)}"}
    values.update(fields)
    provider = SupportProvider(organization_id=organization_id, **values)
    db.add(provider)
    await db.flush()
    return provider


async def make_measure(db: AsyncSession, project: Project, **fields: Any) -> SupportMeasure:
    values: dict[str, Any] = {"type": "finance", "unit": "RUB", "status": "requested"}
    values.update(fields)
    measure = SupportMeasure(organization_id=project.organization_id, project_id=project.id, **values)
    db.add(measure)
    await db.flush()
    return measure


async def stored_measures(db: AsyncSession, project_id: int) -> list[SupportMeasure]:
    db.expunge_all()
    rows = await db.scalars(
        select(SupportMeasure).where(SupportMeasure.project_id == project_id).order_by(SupportMeasure.id)
    )
    return list(rows)


async def activities(db: AsyncSession, entity_type: str, entity_id: int) -> list[Activity]:
    rows = await db.scalars(
        select(Activity)
        .where(Activity.entity_type == entity_type, Activity.entity_id == entity_id)
        .order_by(Activity.id)
    )
    return list(rows)
