"""The ASGI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import RedirectResponse
from starlette.types import ASGIApp

from crm.api import API_V1_PREFIX, api_v1_routers, root_routers
from crm.config import Settings, get_settings
from crm.core.db import create_engine, create_sessionmaker
from crm.core.docs import install_docs
from crm.core.errors import install_error_handlers
from crm.core.logging import configure_logging
from crm.core.middleware import RequestContextMiddleware
from crm.core.openapi import finish_document
from crm.core.redis import SafeRedis
from crm.core.request_checks import check_request
from crm.core.responses import ApiJSONResponse
from crm.core.routing import literal_segments_win
from crm.core.schemas import storable_query
from crm.records.fast_read import FastReadPool, FastReads
from crm.records.fast_write import FastCreates

log = structlog.get_logger(__name__)

DESCRIPTION = """
Multi-tenant CRM: contacts, companies, deals, tasks, investment projects, integrations and analytics.

**Authorize** once: your email and password (OAuth2 password flow) and, if you belong to several
organizations, the organization's id (`Organization`, sent as `X-Organization-ID`). Errors are RFC 9457
problem details (`application/problem+json`).
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    app.state.engine = create_engine(settings, application_name="crm-api")
    app.state.sessionmaker = create_sessionmaker(app.state.engine)
    app.state.redis = SafeRedis.from_url(settings.redis_url, settings.redis_timeout)
    if settings.create_admin_on_startup:
        from crm.bootstrap import ensure_admin

        try:
            await ensure_admin(app.state.sessionmaker, settings)
        except Exception:
            log.exception("create_admin_failed")
    # The OpenAPI document is built here, once per process, not by the first client that asks.
    app.openapi()
    log.info("startup", environment=settings.environment)
    try:
        yield
    finally:
        await app.state.redis.close()
        await app.state.hot_read_pool.close()
        await app.state.engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = CRMApp(
        title="CRM API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        redirect_slashes=False,
        default_response_class=ApiJSONResponse,
        docs_url=None,
        redoc_url=None,
        swagger_ui_parameters={"persistAuthorization": True},
        # Metrics are our own Prometheus series (crm.core.metrics); no OpenTelemetry export.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # A literal path segment wins over `{id}` for every method (405, not 422), and a NUL in any
        # query parameter is a 422 before a handler runs (PostgreSQL text cannot hold it).
        dependencies=[Depends(literal_segments_win), Depends(storable_query)],
    )
    app.state.settings = settings
    install_error_handlers(app)
    for router in api_v1_routers:
        app.include_router(router, prefix=API_V1_PREFIX, dependencies=[Depends(check_request)])
    for router in root_routers:
        app.include_router(router)
    install_docs(app)

    @app.get("/api/v1/docs", include_in_schema=False)
    async def docs_redirect() -> RedirectResponse:
        return RedirectResponse("/docs")

    app.state.hot_read_pool = FastReadPool(settings)
    origins = settings.cors_origin_list
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_credentials="*" not in origins,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=[
            "ETag",
            "Location",
            "X-Request-ID",
            "X-Total-Count",
            "X-Cache",
            "Retry-After",
            "RateLimit",
            "RateLimit-Policy",
        ],
    )
    return app


class CRMApp(FastAPI):
    """FastAPI whose outermost layers are ours: the request context (request id, access log,
    metrics, body cap) and, inside it, the fast paths for the routes marked `@fast_read`
    (`crm.records.fast_read`) and `@fast_create` (`crm.records.fast_write`), so that their answers
    skip the framework's own layers. Being outermost, the
    request context also labels the 500s the framework's error layer writes."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            finish_document(super().openapi())
        return self.openapi_schema or {}

    def build_middleware_stack(self) -> ASGIApp:
        settings: Settings = self.state.settings
        framework = super().build_middleware_stack()
        pool = self.state.hot_read_pool
        creates = FastCreates(framework, routes=self.routes, pool=pool)
        fast = FastReads(creates, routes=self.routes, pool=pool)
        return RequestContextMiddleware(
            fast, max_body=settings.max_body_bytes, max_import_body=settings.max_import_bytes
        )
