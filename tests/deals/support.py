"""Helpers shared by the deal and pipeline tests: problem assertions, deals made over HTTP and
fresh reads of what is stored."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient, Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Activity, Deal, DealHistory, Pipeline, PipelineStage
from tests.factories import Actor

DEALS = "/api/v1/deals"
PIPELINES = "/api/v1/pipelines"
DEFAULT_KEYS = ["lead", "qualification", "proposal", "negotiation"]


def assert_problem(response: Response, status: int, code: str) -> dict[str, Any]:
    """An RFC 9457 answer with our `code`; returns the body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["detail"]
    return body


def assert_invalid(response: Response, code: str, *loc: str) -> dict[str, Any]:
    """A 422 whose `errors` name `loc`."""
    body = assert_problem(response, 422, code)
    assert any(tuple(e["loc"]) == loc for e in body["errors"]), body
    return body


def org_of(actor: Actor) -> int:
    assert actor.org_id is not None
    return actor.org_id


async def create_deal(client: AsyncClient, actor: Actor, **body: Any) -> dict[str, Any]:
    body.setdefault("title", "Deal")
    response = await client.post(DEALS, json=body, headers=actor.headers)
    assert response.status_code == 201, response.text
    deal: dict[str, Any] = response.json()
    return deal


async def create_pipeline(client: AsyncClient, actor: Actor, *keys: str, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "Projects")
    body.setdefault("stages", [{"key": k, "name": k.title()} for k in keys])
    response = await client.post(PIPELINES, json=body, headers=actor.headers)
    assert response.status_code == 201, response.text
    pipeline: dict[str, Any] = response.json()
    return pipeline


async def default_pipeline(client: AsyncClient, actor: Actor) -> dict[str, Any]:
    response = await client.get(PIPELINES, headers=actor.headers)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = next(p for p in response.json()["items"] if p["is_default"])
    return found


async def stored_deal(db: AsyncSession, deal_id: int) -> Deal:
    db.expunge_all()
    return (await db.execute(select(Deal).where(Deal.id == deal_id))).scalar_one()


async def history_rows(db: AsyncSession, deal_id: int) -> list[tuple[str, str | None, str]]:
    """(field, from, to) of a deal's history, oldest first."""
    rows = await db.execute(
        select(DealHistory.field, DealHistory.from_value, DealHistory.to_value)
        .where(DealHistory.deal_id == deal_id)
        .order_by(DealHistory.created_at, DealHistory.id)
    )
    return [tuple(r) for r in rows.all()]  # type: ignore[misc]


async def activities(db: AsyncSession, entity_type: str, entity_id: int) -> list[Activity]:
    """A record's activities, oldest first."""
    db.expunge_all()
    rows = await db.execute(
        select(Activity)
        .where(Activity.entity_type == entity_type, Activity.entity_id == entity_id)
        .order_by(Activity.id)
    )
    return list(rows.scalars().all())


async def deal_count(db: AsyncSession, organization_id: int) -> int:
    stmt = select(func.count()).select_from(Deal).where(Deal.organization_id == organization_id)
    return int(await db.scalar(stmt) or 0)


async def stored_pipelines(db: AsyncSession, organization_id: int) -> list[Pipeline]:
    db.expunge_all()
    rows = await db.execute(
        select(Pipeline).where(Pipeline.organization_id == organization_id).order_by(Pipeline.id)
    )
    return list(rows.scalars().all())


async def stored_stages(db: AsyncSession, pipeline_id: int) -> list[tuple[str, str, int, bool]]:
    """(key, name, position, is_archived) of a pipeline's stages, in order."""
    rows = await db.execute(
        select(PipelineStage.key, PipelineStage.name, PipelineStage.position, PipelineStage.is_archived)
        .where(PipelineStage.pipeline_id == pipeline_id)
        .order_by(PipelineStage.position, PipelineStage.id)
    )
    return [tuple(r) for r in rows.all()]  # type: ignore[misc]
