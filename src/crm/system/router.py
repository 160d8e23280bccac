"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from sqlalchemy import text

from crm.core.metrics import render_latest

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


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(render_latest(), media_type=CONTENT_TYPE_LATEST)
