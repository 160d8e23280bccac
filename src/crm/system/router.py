"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from pydantic import BaseModel
from redis.asyncio import Redis as AsyncRedis
from sqlalchemy import func, select, text

from crm.core.metrics import gauge, render_latest
from crm.models.import_job import ImportJob
from crm.models.sync_job import SyncJob

CELERY_QUEUE = "crm"  # `task_default_queue` of crm.worker.app

router = APIRouter(tags=["system"])


class Health(BaseModel):
    status: str
    service: str


class Ready(BaseModel):
    status: str
    database: str
    redis: str


@router.get("/health", response_model=Health)
async def health() -> Health:
    """Liveness only: answers while the process runs, whatever its dependencies."""
    return Health(status="healthy", service="CRM API")


async def _database_ok(request: Request) -> bool:
    try:
        async with asyncio.timeout(3):
            async with request.app.state.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


@router.get("/ready", response_model=Ready, responses={503: {"model": Ready, "description": "Not ready"}})
async def ready(request: Request) -> JSONResponse:
    """Readiness: 503 when PostgreSQL is down; 200 `degraded` when only Redis is (the API works on)."""
    db_ok, redis_ok = await asyncio.gather(_database_ok(request), request.app.state.redis.ping())
    body = Ready(
        status="ready" if db_ok and redis_ok else ("degraded" if db_ok else "unavailable"),
        database="ok" if db_ok else "down",
        redis="ok" if redis_ok else "down",
    )
    return JSONResponse(body.model_dump(), status_code=200 if db_ok else 503)


async def _job_outcomes(request: Request) -> list[Metric]:
    """`crm_jobs`: sync and import jobs by status (terminal ones are the outcomes), counted now."""
    try:
        async with asyncio.timeout(2), request.app.state.engine.connect() as conn:
            rows = [
                (kind, status, count)
                for kind, model in (("sync", SyncJob), ("import", ImportJob))
                for status, count in await conn.execute(
                    select(model.status, func.count()).group_by(model.status)
                )
            ]
    except Exception:  # PostgreSQL away: no sample rather than a failed scrape
        return []
    return [gauge("crm_jobs", "Sync and import jobs by kind and status", ["kind", "status"], rows)]


async def _queue_depth(request: Request) -> list[Metric]:
    """`crm_celery_queue_length`: messages waiting in the broker queue (Redis brokers)."""
    url = request.app.state.settings.celery_broker_url
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return []
    client = AsyncRedis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        length = await client.llen(CELERY_QUEUE)
    except Exception:  # the broker is away: no sample rather than a failed scrape
        return []
    finally:
        await client.aclose()
    return [
        gauge(
            "crm_celery_queue_length",
            "Messages waiting in the broker queue",
            ["queue"],
            [(CELERY_QUEUE, length)],
        )
    ]


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    jobs, queue = await asyncio.gather(_job_outcomes(request), _queue_depth(request))
    return Response(render_latest([*jobs, *queue]), media_type=CONTENT_TYPE_LATEST)
