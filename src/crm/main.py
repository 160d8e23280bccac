"""The ASGI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import RedirectResponse

from crm.api import API_V1_PREFIX, api_v1_routers, root_routers
from crm.config import Settings, get_settings
from crm.core.db import create_engine, create_sessionmaker
from crm.core.errors import install_error_handlers
from crm.core.logging import configure_logging
from crm.core.middleware import RequestContextMiddleware
from crm.core.redis import SafeRedis

log = structlog.get_logger(__name__)

DESCRIPTION = """
Multi-tenant CRM: contacts, companies, deals, tasks, investment projects, integrations and analytics.

**Authorize** with your email and password (OAuth2 password flow), then send `X-Organization-ID` on
tenant routes. Errors are RFC 9457 problem details (`application/problem+json`).
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    app.state.engine = create_engine(settings)
    app.state.sessionmaker = create_sessionmaker(app.state.engine)
    app.state.redis = SafeRedis.from_url(settings.redis_url, settings.redis_timeout)
    if settings.create_admin_on_startup:
        from crm.bootstrap import ensure_admin

        try:
            await ensure_admin(app.state.sessionmaker, settings)
        except Exception:
            log.exception("create_admin_failed")
    log.info("startup", environment=settings.environment)
    try:
        yield
    finally:
        await app.state.redis.close()
        await app.state.engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = FastAPI(
        title="CRM API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        redirect_slashes=False,
        swagger_ui_parameters={"persistAuthorization": True},
    )
    app.state.settings = settings
    install_error_handlers(app)
    for router in api_v1_routers:
        app.include_router(router, prefix=API_V1_PREFIX)
    for router in root_routers:
        app.include_router(router)

    @app.get("/api/v1/docs", include_in_schema=False)
    async def docs_redirect() -> RedirectResponse:
        return RedirectResponse("/docs")

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
    app.add_middleware(
        RequestContextMiddleware, max_body=settings.max_body_bytes, max_import_body=settings.max_import_bytes
    )
    return app
