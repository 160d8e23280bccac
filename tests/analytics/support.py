"""Rows for the analytics and search tests, written straight to the tables (no other feature's API)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Company, Contact, Deal, DealHistory, Pipeline, PipelineStage, Task

STAGES = ("lead", "qualification", "proposal", "negotiation")
_seq = itertools.count(1)


@dataclass
class SalesPipeline:
    pipeline: Pipeline
    stages: list[PipelineStage]

    @property
    def id(self) -> int:
        return self.pipeline.id


async def make_pipeline(
    db: AsyncSession,
    org_id: int,
    keys: Sequence[str] = STAGES,
    *,
    is_default: bool = True,
    archived: Sequence[str] = (),
    name: str = "Sales",
) -> SalesPipeline:
    pipeline = Pipeline(organization_id=org_id, name=name, is_default=is_default)
    db.add(pipeline)
    await db.flush()
    stages = [
        PipelineStage(
            organization_id=org_id,
            pipeline_id=pipeline.id,
            key=key,
            name=key.capitalize(),
            position=position,
            is_archived=key in archived,
        )
        for position, key in enumerate(keys)
    ]
    db.add_all(stages)
    await db.flush()
    return SalesPipeline(pipeline, stages)


async def make_contact(db: AsyncSession, org_id: int, full_name: str, **values: Any) -> Contact:
    contact = Contact(organization_id=org_id, full_name=full_name, **values)
    db.add(contact)
    await db.flush()
    return contact


async def make_company(db: AsyncSession, org_id: int, name: str, **values: Any) -> Company:
    company = Company(organization_id=org_id, name=name, **values)
    db.add(company)
    await db.flush()
    return company


async def make_deal(
    db: AsyncSession,
    org_id: int,
    pipeline: SalesPipeline,
    *,
    title: str | None = None,
    amount: str | int = "0",
    stage: str | None = None,
    created_at: datetime | None = None,
    **values: Any,
) -> Deal:
    """A deal with its first stage-history row (entering its stage when it was created, SPEC §19.4)."""
    created_at = created_at or datetime.now(UTC)
    stage = stage or pipeline.stages[0].key
    deal = Deal(
        organization_id=org_id,
        pipeline_id=pipeline.id,
        title=title or f"Deal {next(_seq)}",
        amount=Decimal(str(amount)),
        stage=stage,
        created_at=created_at,
        updated_at=created_at,
        **values,
    )
    db.add(deal)
    await db.flush()
    db.add(
        DealHistory(
            organization_id=org_id,
            deal_id=deal.id,
            pipeline_id=pipeline.id,
            field="stage",
            from_value=None,
            to_value=stage,
            created_at=created_at,
        )
    )
    await db.flush()
    return deal


async def move(db: AsyncSession, deal: Deal, stage: str, at: datetime) -> None:
    """The deal enters `stage` at `at` (a stage-history row, as the deals service writes one, leaving
    its open stage row at `at`)."""
    await db.execute(
        update(DealHistory)
        .where(DealHistory.deal_id == deal.id, DealHistory.field == "stage", DealHistory.left_at.is_(None))
        .values(left_at=at)
        .execution_options(synchronize_session=False)
    )
    db.add(
        DealHistory(
            organization_id=deal.organization_id,
            deal_id=deal.id,
            pipeline_id=deal.pipeline_id,
            field="stage",
            from_value=deal.stage,
            to_value=stage,
            created_at=at,
        )
    )
    deal.stage = stage
    await db.flush()


async def set_status(db: AsyncSession, deal: Deal, status: str, at: datetime) -> None:
    db.add(
        DealHistory(
            organization_id=deal.organization_id,
            deal_id=deal.id,
            pipeline_id=deal.pipeline_id,
            field="status",
            from_value=deal.status,
            to_value=status,
            created_at=at,
        )
    )
    deal.status = status
    if status in ("won", "lost"):
        deal.closed_at = at
    await db.flush()


async def make_task(
    db: AsyncSession, org_id: int, *, due_date: datetime | None, status: str = "open"
) -> Task:
    task = Task(organization_id=org_id, title=f"Task {next(_seq)}", due_date=due_date, status=status)
    db.add(task)
    await db.flush()
    return task
