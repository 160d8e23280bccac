"""`/admin/integrations`, `/admin/users`, `/admin/health` and the public `/integrations/{id}/webhook`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from crm.admin import webhooks
from crm.admin.health import system_health
from crm.admin.providers import installed_providers
from crm.admin.schemas import (
    AdminUserRead,
    AdminUserUpdate,
    ConnectionTestResult,
    IntegrationCreate,
    IntegrationRead,
    IntegrationTest,
    IntegrationUpdate,
    ProviderInfo,
    SystemHealth,
    WebhookAccepted,
)
from crm.admin.service import IntegrationService, to_read
from crm.admin.users import UserAdminService
from crm.auth.dependencies import Superuser
from crm.core.concurrency import IfMatch, set_etag
from crm.core.db import SessionDep
from crm.core.errors import PayloadTooLarge
from crm.core.idempotency import IdempotencyDep
from crm.core.idempotent import create_once
from crm.core.openapi import creates, errors
from crm.core.schemas import Id, Page, Paging
from crm.models import Integration
from crm.organizations.dependencies import Tenant, principal_of, require

router = APIRouter(prefix="/admin", tags=["admin"])
webhook_router = APIRouter(prefix="/integrations", tags=["integrations"])

PATH = "/api/v1/admin/integrations"
Admin = Annotated[Tenant, Depends(require("integrations:manage"))]


async def get_service(db: SessionDep, tenant: Admin) -> IntegrationService:
    return IntegrationService(db, tenant)


Service = Annotated[IntegrationService, Depends(get_service)]


def public_base(request: Request) -> str:
    """Where providers reach this API: the base URL the request came in on (behind a proxy, as
    rewritten by the server's forwarded-headers handling)."""
    return str(request.base_url)


def _no_store(response: Response) -> None:
    response.headers["Cache-Control"] = "no-store"


def _answer(request: Request, response: Response, integration: Integration) -> IntegrationRead:
    """One integration as answered: with its `ETag`, and never cached."""
    set_etag(response, integration.version)
    _no_store(response)
    return to_read(integration, public_base(request))


@router.get("/integrations", response_model=Page[IntegrationRead], responses=errors(400, 401, 403, 422))
async def list_integrations(
    request: Request, response: Response, service: Service, paging: Paging
) -> Page[IntegrationRead]:
    """The organization's integrations, newest first. Credentials show as `"***"`."""
    rows, total = await service.list(paging.limit, paging.offset)
    _no_store(response)
    base = public_base(request)
    return paging.page([to_read(r, base) for r in rows], total)


@creates(router, "/integrations", IntegrationRead, 400, 401, 403, 409, 422)
async def create_integration(
    data: IntegrationCreate,
    request: Request,
    response: Response,
    service: Service,
    tenant: Admin,
    idem: IdempotencyDep,
) -> object:
    """Connect a provider. Credentials and settings are checked against the provider's schemas, the
    base URL against SSRF rules (422 `url_not_allowed`). The first scheduled sync runs one
    `sync_interval_minutes` after creation. Accepts `Idempotency-Key`."""

    async def create() -> IntegrationRead:
        integration = await service.create(data)
        response.headers["Location"] = f"{PATH}/{integration.id}"
        return _answer(request, response, integration)

    return await create_once(idem, principal_of(tenant), response, create)


@router.get("/providers", response_model=list[ProviderInfo], responses=errors(400, 401, 403, 422))
async def list_providers(tenant: Admin) -> list[ProviderInfo]:
    """The installed providers an integration can use (a plugin appears once its distribution is
    installed and the API restarted), with the JSON Schemas of their credentials and settings."""
    return await installed_providers()


@router.post("/integrations/test", response_model=ConnectionTestResult, responses=errors(400, 401, 403, 422))
async def test_unsaved_integration(data: IntegrationTest, service: Service) -> ConnectionTestResult:
    """Try an unsaved configuration against the provider: `{ok, detail}` (a refused login is
    `ok: false`, not an error)."""
    return await service.test_config(data)


@router.get(
    "/integrations/{integration_id}",
    response_model=IntegrationRead,
    responses=errors(400, 401, 403, 404, 422),
)
async def get_integration(
    integration_id: Id, request: Request, response: Response, service: Service
) -> IntegrationRead:
    """One integration; its `ETag` is the version to send back in `If-Match`."""
    return _answer(request, response, await service.get(integration_id))


@router.patch(
    "/integrations/{integration_id}",
    response_model=IntegrationRead,
    responses=errors(400, 401, 403, 404, 412, 422),
)
async def update_integration(
    integration_id: Id,
    data: IntegrationUpdate,
    request: Request,
    response: Response,
    service: Service,
    if_match: IfMatch = None,
) -> IntegrationRead:
    """Change the fields sent. `credentials` replaces the stored ones (a `"***"` value keeps that
    key's stored value). Honours `If-Match` (412 when stale)."""
    return _answer(request, response, await service.update(integration_id, data, if_match))


@router.delete(
    "/integrations/{integration_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(400, 401, 403, 404, 409, 422),
)
async def delete_integration(integration_id: Id, service: Service) -> None:
    """Delete an integration with its jobs and cursors; 409 `job_already_running` while a sync job
    of it is queued or running (cancel it first). Synced records stay."""
    await service.delete(integration_id)


@router.post(
    "/integrations/{integration_id}/test",
    response_model=ConnectionTestResult,
    responses=errors(400, 401, 403, 404, 422),
)
async def test_integration(integration_id: Id, service: Service) -> ConnectionTestResult:
    """Try the stored credentials against the provider: `{ok, detail}`."""
    return await service.test_saved(integration_id)


@router.get("/users", response_model=Page[AdminUserRead], responses=errors(401, 403, 422))
async def list_all_users(
    request: Request,
    response: Response,
    db: SessionDep,
    user: Superuser,
    paging: Paging,
    q: Annotated[str | None, Query(max_length=200, description="Part of the email or name")] = None,
    is_active: Annotated[bool | None, Query()] = None,
) -> Page[AdminUserRead]:
    """Every user account, newest first (superusers only)."""
    rows, total = await UserAdminService(db, request.app.state.redis, user).list(
        q, is_active, paging.limit, paging.offset
    )
    _no_store(response)
    return paging.page([AdminUserRead.model_validate(r, from_attributes=True) for r in rows], total)


@router.patch("/users/{user_id}", response_model=AdminUserRead, responses=errors(401, 403, 404, 409, 422))
async def update_user(
    user_id: Id,
    data: AdminUserUpdate,
    request: Request,
    response: Response,
    db: SessionDep,
    user: Superuser,
) -> AdminUserRead:
    """Activate, deactivate (every session of the user ends at once) or grant/remove superuser.
    You cannot deactivate or demote yourself (409 `cannot_change_self`)."""
    updated = await UserAdminService(db, request.app.state.redis, user).update(user_id, data)
    _no_store(response)
    return AdminUserRead.model_validate(updated, from_attributes=True)


@router.get("/health", response_model=SystemHealth, responses=errors(400, 401, 403, 422))
async def admin_health(request: Request, db: SessionDep, tenant: Admin) -> SystemHealth:
    """PostgreSQL, Redis and broker state, workers seen in the last minute, and the last sync of
    each of the organization's integrations (with its active job, if any)."""
    return await system_health(db, request.app.state.redis, tenant)


@webhook_router.post(
    "/{integration_id}/webhook",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=WebhookAccepted,
    responses={
        200: {"model": WebhookAccepted, "description": "MoySklad event accepted"},
        **errors(401, 413, 422),
    },
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
            },
        }
    },
)
async def provider_webhook(
    integration_id: Id,
    request: Request,
    response: Response,
    db: SessionDep,
    token: Annotated[str | None, Query(max_length=200, description="The secret of the `webhook_url`")] = None,
    request_id: Annotated[
        str | None,
        Query(
            alias="requestId", max_length=100, description="MoySklad's delivery id (repeated by its retries)"
        ),
    ] = None,
) -> WebhookAccepted:
    """Change notifications from a provider (public; verified by the `webhook_url` token, or for
    Bitrix24 by `auth[application_token]`). Queues a sync of the records or entities the events name;
    when a job of the integration is already active, it is acknowledged without a new one. A repeated
    event (same MoySklad `requestId`, same Bitrix24 event) queues nothing. Bitrix24 events are answered
    202; MoySklad events 200, the only answers MoySklad counts as delivered."""
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > webhooks.MAX_BODY:
            raise PayloadTooLarge(f"Webhook bodies are limited to {webhooks.MAX_BODY // 1024} KiB")
    accepted, code = await webhooks.receive(
        db,
        integration_id,
        token,
        bytes(body),
        request.headers.get("content-type", ""),
        redis=getattr(request.app.state, "redis", None),
        request_id=request_id,
    )
    response.status_code = code
    return accepted
