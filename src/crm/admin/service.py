"""Integrations of an organization: create, change, delete, try a connection.

Credentials are validated against the provider's schema, encrypted at rest and never shown: reads
replace every value by `"***"`, errors name fields but never echo values, and a provider's failure
detail is scrubbed of credential values before it is returned.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from crm.activities.service import ActivityService, jsonable
from crm.admin.exceptions import (
    IntegrationBusy,
    IntegrationNotFound,
    InvalidIntegrationConfig,
    UnknownProviderError,
)
from crm.admin.repository import IntegrationRepository
from crm.admin.schemas import (
    ConnectionTestResult,
    IntegrationCreate,
    IntegrationRead,
    IntegrationTest,
    IntegrationUpdate,
)
from crm.config import get_settings
from crm.core.concurrency import check_version
from crm.core.schemas import from_row, model_dump_changes
from crm.integrations.base import Provider, ProviderContext, ProviderError
from crm.integrations.crypto import (
    CredentialsUnreadable,
    decrypt_credentials,
    encrypt_credentials,
    mask_credentials,
)
from crm.integrations.registry import UnknownProvider, get_provider, provider_names
from crm.integrations.ssrf import allow_private_urls, check_url
from crm.models import Integration
from crm.organizations.dependencies import Tenant

log = structlog.get_logger(__name__)

MASK = "***"
#: A connection test gives up after this many seconds.
TEST_TIMEOUT = 30.0
#: Settings keys starting with this are the server's own (e.g. `_state`: a provider's session token).
RESERVED_PREFIX = "_"


def load_provider(name: str) -> Provider:
    try:
        return get_provider(name)
    except UnknownProvider:
        raise UnknownProviderError(name, provider_names()) from None
    except Exception:  # a plugin that fails to load is as good as missing
        log.exception("provider_load_failed", provider=name)
        raise UnknownProviderError(name, provider_names()) from None


def _validated(schema: type[BaseModel], value: dict[str, Any], field: str) -> dict[str, Any]:
    """`value` checked against a provider schema: the given keys, with declared fields coerced.
    Errors carry locations and messages only, never the values."""
    errors = [
        {"loc": ["body", field, key], "msg": "keys starting with '_' are reserved", "type": "value_error"}
        for key in value
        if key.startswith(RESERVED_PREFIX)
    ]
    if errors:
        raise InvalidIntegrationConfig(errors)
    try:
        model = schema.model_validate(value)
    except ValidationError as exc:
        raise InvalidIntegrationConfig(
            [
                {"loc": ["body", field, *err["loc"]], "msg": err["msg"], "type": err["type"]}
                for err in exc.errors(include_url=False, include_input=False, include_context=False)
            ]
        ) from None
    return {**value, **model.model_dump(mode="json", exclude_unset=True)}


def _validated_config(
    provider: Provider, credentials: dict[str, Any], settings: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Credentials and settings checked together, so one answer names every problem."""
    errors: list[dict[str, Any]] = []
    checked: list[dict[str, Any]] = []
    for schema, value, field in (
        (provider.credentials_schema, credentials, "credentials"),
        (provider.settings_schema, settings, "settings"),
    ):
        try:
            checked.append(_validated(schema, value, field))
        except InvalidIntegrationConfig as exc:
            errors.extend(exc.extra["errors"])
    if errors:
        raise InvalidIntegrationConfig(errors)
    return checked[0], checked[1]


def scrub(text: str, credentials: dict[str, Any]) -> str:
    """`text` with every credential value (of some length) replaced by `***`."""
    for value in credentials.values():
        if isinstance(value, (str, int)) and len(str(value)) >= 4:
            text = text.replace(str(value), MASK)
    return text


def public_settings(settings: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (settings or {}).items() if not k.startswith(RESERVED_PREFIX)}


def masked_credentials(integration: Integration) -> dict[str, str]:
    try:
        return mask_credentials(decrypt_credentials(integration.credentials_encrypted))
    except CredentialsUnreadable:
        return {}


def webhook_url(public_base: str, integration: Integration) -> str:
    return (
        f"{public_base.rstrip('/')}/api/v1/integrations/{integration.id}/webhook"
        f"?token={integration.webhook_secret}"
    )


def to_read(integration: Integration, public_base: str) -> IntegrationRead:
    return from_row(
        IntegrationRead,
        integration,
        credentials=masked_credentials(integration),
        settings=public_settings(integration.settings),
        webhook_url=webhook_url(public_base, integration),
    )


async def try_connection(provider: Provider, ctx: ProviderContext) -> ConnectionTestResult:
    """The provider's connection test; any failure is `ok: false` with a detail safe to show."""
    try:
        async with asyncio.timeout(TEST_TIMEOUT):
            result = await provider.test_connection(ctx)
        ok, detail = bool(result.ok), str(result.detail)
    except ProviderError as exc:
        ok, detail = False, exc.message
    except (TimeoutError, httpx.TimeoutException):
        ok, detail = False, "the provider did not answer in time"
    except httpx.HTTPError:
        ok, detail = False, "could not connect to the provider"
    except Exception as exc:  # a plugin bug must not become a 500 or leak its message
        log.warning("connection_test_failed", provider=provider.name, error=type(exc).__name__)
        ok, detail = False, f"the connection test failed ({type(exc).__name__})"
    finally:
        try:
            await provider.aclose()
        except Exception:
            log.warning("provider_close_failed", provider=provider.name)
    return ConnectionTestResult(
        ok=ok, detail=scrub(detail, ctx.credentials)[:1000] or ("ok" if ok else "failed")
    )


class IntegrationService:
    def __init__(self, db: AsyncSession, tenant: Tenant) -> None:
        self.db = db
        self.tenant = tenant
        self.repo = IntegrationRepository(db, tenant.organization_id)
        self.activities = ActivityService(db, tenant.organization_id, tenant.user_id)

    async def list(self, limit: int, offset: int) -> tuple[Sequence[Integration], int]:
        return await self.repo.list(limit, offset)

    async def get(self, integration_id: int, *, for_update: bool = False) -> Integration:
        integration = await self.repo.get(integration_id, for_update=for_update)
        if integration is None:
            raise IntegrationNotFound()
        return integration

    async def _checked(
        self, provider: Provider, data: IntegrationCreate | IntegrationTest
    ) -> tuple[str | None, dict[str, Any], dict[str, Any]]:
        """A new configuration's base URL, credentials and settings, each checked (422 otherwise);
        credentials carried by the URL moved into the credentials."""
        url, given = _credentials_from_url(provider, data.base_url, data.credentials)
        credentials, settings = _validated_config(provider, given or {}, data.settings)
        return await self._base_url(provider, url), credentials, settings

    async def _base_url(self, provider: Provider, base_url: str | None) -> str | None:
        url = base_url or provider.default_base_url
        if url:
            await check_url(url, allow_private=allow_private_urls())
        return url

    async def create(self, data: IntegrationCreate) -> Integration:
        provider = load_provider(data.provider)
        try:
            base_url, credentials, settings = await self._checked(provider, data)
        finally:
            await provider.aclose()
        interval = data.sync_interval_minutes or get_settings().moysklad_sync_interval_minutes
        now = datetime.now(UTC)
        integration = Integration(
            provider=data.provider,
            name=data.name,
            base_url=base_url,
            credentials_encrypted=encrypt_credentials(credentials),
            settings=settings,
            enabled=data.enabled,
            sync_interval_minutes=interval,
            # The first scheduled sync runs one interval after creation (§18), so a manual start
            # right after creating it does not collide with beat.
            next_sync_at=now + timedelta(minutes=interval),
            webhook_secret=secrets.token_urlsafe(32),
            created_by_id=self.tenant.user_id,
        )
        self.repo.add(integration)
        await self.db.flush()
        self.activities.record(
            "integration",
            integration.id,
            "created",
            {
                "provider": [None, integration.provider],
                "name": [None, integration.name],
                "base_url": [None, integration.base_url],
                "enabled": [None, integration.enabled],
                "sync_interval_minutes": [None, interval],
            },
        )
        await self.db.flush()
        return integration

    async def update(self, integration_id: int, data: IntegrationUpdate, if_match: str | None) -> Integration:
        integration = await self.get(integration_id, for_update=True)
        check_version(integration.version, if_match)
        sent = model_dump_changes(data)
        for field in ("name", "enabled", "sync_interval_minutes"):
            if field in sent and sent[field] is None:
                raise InvalidIntegrationConfig(
                    [{"loc": ["body", field], "msg": "may not be null", "type": "value_error"}]
                )
        changes: dict[str, list[Any]] = {}
        provider = load_provider(integration.provider)
        reconnect = False
        moved = False
        try:
            if sent.get("base_url"):
                url, credentials = _credentials_from_url(provider, sent["base_url"], sent.get("credentials"))
                if credentials is not sent.get("credentials"):
                    # The URL carried credentials: they join the stored ones ("***" keeps a value).
                    sent["credentials"] = dict.fromkeys(self._stored_credentials(integration), MASK)
                    sent["credentials"].update(credentials or {})
                sent["base_url"] = url
            if "base_url" in sent:
                base_url = await self._base_url(provider, sent["base_url"])
                if base_url != integration.base_url:
                    changes["base_url"] = [integration.base_url, base_url]
                    integration.base_url = base_url
                    reconnect = moved = True
            if "credentials" in sent and sent["credentials"] is not None:
                new = await self._merged_credentials(integration, sent["credentials"])
                credentials = _validated(provider.credentials_schema, new, "credentials")
                integration.credentials_encrypted = encrypt_credentials(credentials)
                changes["credentials"] = [MASK, MASK]
                reconnect = True
            if "settings" in sent and sent["settings"] is not None:
                settings = _validated(provider.settings_schema, sent["settings"], "settings")
                kept = {
                    k: v for k, v in (integration.settings or {}).items() if k.startswith(RESERVED_PREFIX)
                }
                old = public_settings(integration.settings)
                if settings != old:
                    changes["settings"] = [jsonable(old), jsonable(settings)]
                integration.settings = {**settings, **kept}
        finally:
            await provider.aclose()
        if reconnect and integration.settings and "_state" in integration.settings:
            # A session token obtained with the old credentials or host is not reused; what the
            # provider made in this organization (a pipeline and its stage map) stays while the
            # account does.
            durable = () if moved else tuple(getattr(provider, "durable_state", ()))
            state = integration.settings["_state"]
            kept = {k: v for k, v in state.items() if k in durable} if isinstance(state, dict) else {}
            integration.settings = {k: v for k, v in integration.settings.items() if k != "_state"}
            if kept:
                integration.settings["_state"] = kept
        now = datetime.now(UTC)
        for field in ("name", "enabled", "sync_interval_minutes"):
            if field in sent and getattr(integration, field) != sent[field]:
                changes[field] = [getattr(integration, field), sent[field]]
                setattr(integration, field, sent[field])
        if "sync_interval_minutes" in changes or changes.get("enabled") == [False, True]:
            integration.next_sync_at = now + timedelta(minutes=integration.sync_interval_minutes)
        if changes:
            integration.version += 1
            integration.updated_at = now
            self.activities.record("integration", integration.id, "updated", changes)
        await self.db.flush()
        return integration

    @staticmethod
    def _stored_credentials(integration: Integration) -> dict[str, Any]:
        try:
            return decrypt_credentials(integration.credentials_encrypted)
        except CredentialsUnreadable:
            return {}

    async def _merged_credentials(self, integration: Integration, sent: dict[str, Any]) -> dict[str, Any]:
        """`"***"` values stand for the stored value of the same key."""
        if not any(v == MASK for v in sent.values()):
            return dict(sent)
        try:
            stored = decrypt_credentials(integration.credentials_encrypted)
        except CredentialsUnreadable:
            stored = {}
        errors = [
            {"loc": ["body", "credentials", k], "msg": "no stored value to keep", "type": "value_error"}
            for k, v in sent.items()
            if v == MASK and k not in stored
        ]
        if errors:
            raise InvalidIntegrationConfig(errors)
        return {k: stored[k] if v == MASK else v for k, v in sent.items()}

    async def delete(self, integration_id: int) -> None:
        integration = await self.get(integration_id, for_update=True)
        active = await self.repo.active_jobs([integration.id])
        if integration.id in active:
            raise IntegrationBusy(active[integration.id])
        self.activities.record(
            "integration",
            integration.id,
            "deleted",
            {"name": [integration.name, None], "provider": [integration.provider, None]},
        )
        await self.repo.delete(integration)
        await self.db.flush()

    async def test_saved(self, integration_id: int) -> ConnectionTestResult:
        integration = await self.get(integration_id)
        try:
            credentials = decrypt_credentials(integration.credentials_encrypted)
        except CredentialsUnreadable:
            return ConnectionTestResult(ok=False, detail="the stored credentials cannot be decrypted")
        if integration.base_url:
            await check_url(integration.base_url, allow_private=allow_private_urls())
        provider = load_provider(integration.provider)
        settings = dict(integration.settings or {})
        ctx = ProviderContext(
            organization_id=integration.organization_id,
            integration_id=integration.id,
            base_url=integration.base_url,
            credentials=credentials,
            settings=public_settings(settings),
            state=dict(settings.get("_state", {})),
        )
        return await try_connection(provider, ctx)

    async def test_config(self, data: IntegrationTest) -> ConnectionTestResult:
        provider = load_provider(data.provider)
        try:
            base_url, credentials, settings = await self._checked(provider, data)
        except BaseException:
            await provider.aclose()
            raise
        ctx = ProviderContext(
            organization_id=self.tenant.organization_id,
            integration_id=None,
            base_url=base_url,
            credentials=credentials,
            settings=settings,
        )
        return await try_connection(provider, ctx)


def _credentials_from_url(
    provider: Provider, base_url: str | None, credentials: dict[str, Any] | None
) -> tuple[str | None, dict[str, Any] | None]:
    """The base URL without the credentials a provider's URL may carry (a Bitrix24 inbound webhook
    `https://<portal>/rest/<user>/<secret>/`), and the credentials with those filled in; a secret is
    never kept in the clear as part of the URL. 422 when the URL and the credentials sent disagree."""
    split = getattr(provider, "split_base_url", None)
    if not base_url or split is None:
        return base_url, credentials
    url, found = split(base_url)
    if not found:
        return base_url, credentials
    sent = dict(credentials or {})
    errors = [
        {"loc": ["body", "credentials", key], "msg": "differs from base_url's", "type": "value_error"}
        for key, value in found.items()
        if key in sent and sent[key] not in (value, MASK)
    ]
    if errors:
        raise InvalidIntegrationConfig(errors)
    return url, {**sent, **found}
