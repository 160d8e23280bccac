"""Inbound provider webhooks: verify, work out which entities changed, queue a targeted sync.

Verification: the `token` query parameter of the integration's `webhook_url`, compared in constant
time with its secret. Bitrix24 events are checked by `auth[application_token]` instead when the
integration's credentials hold an `application_token`. An unknown integration and a wrong token get
the same 401, so the answer does not reveal which integrations exist.

The body only names what changed (MoySklad: `events[].meta.type`, stock notifications; Bitrix24:
`event=ONCRMDEALUPDATE`); the records themselves are fetched by the sync. When a job of the
integration is already queued or running, the event is acknowledged without a new job: that job or
the next scheduled one picks the change up.
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import parse_qs

import orjson
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from crm.admin.exceptions import InvalidWebhookToken
from crm.admin.repository import find_integration
from crm.admin.schemas import WebhookAccepted
from crm.core.errors import AppError
from crm.integrations.crypto import CredentialsUnreadable, decrypt_credentials
from crm.integrations.registry import provider_entities
from crm.models import Integration

log = structlog.get_logger(__name__)

#: Provider change notifications are small; anything bigger is refused (413).
MAX_BODY = 256 * 1024

#: Bitrix24 event name stems → entity names.
_BITRIX_EVENTS = {
    "ONCRMCONTACT": "contacts",
    "ONCRMCOMPANY": "companies",
    "ONCRMDEAL": "deals",
    "ONUSER": "users",
}
#: Remote type names that differ from our entity names beyond plural/underscore spelling.
_ALIASES = {"demand": ("shipments", "demands"), "bystore": ("stock",), "stock": ("stock",)}


def _norm(name: str) -> str:
    name = name.lower().replace("_", "").replace("-", "")
    if name.endswith("ies"):
        return name[:-3] + "y"
    if name.endswith("s") and not name.endswith("ss"):
        return name[:-1]
    return name


def match_entities(remote_types: list[str], entities: tuple[str, ...]) -> list[str]:
    """Our entity names for remote type names (`customerorder` → `customer_orders`), in sync order."""
    wanted: set[str] = set()
    by_norm = {_norm(e): e for e in entities}
    for remote in remote_types:
        for candidate in (remote, *_ALIASES.get(remote.lower(), ())):
            entity = by_norm.get(_norm(candidate))
            if entity is not None:
                wanted.add(entity)
                break
    return [e for e in entities if e in wanted]


def _remote_types(body: bytes, form: dict[str, list[str]] | None) -> list[str]:
    if form is not None:
        event = (form.get("event") or [""])[0].upper()
        for stem, entity in _BITRIX_EVENTS.items():
            if event.startswith(stem):
                return [entity]
        return []
    try:
        payload: Any = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        return []
    if not isinstance(payload, dict):
        return []
    types: list[str] = []
    events = payload.get("events")
    if isinstance(events, list):
        for event in events:
            meta = event.get("meta") if isinstance(event, dict) else None
            kind = meta.get("type") if isinstance(meta, dict) else None
            if isinstance(kind, str) and kind:
                types.append(kind[:50])
    if "stockType" in payload or "reportUrl" in payload:
        types.append("stock")
    return types


def _same(given: str | None, expected: str | None) -> bool:
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def _parse_form(body: bytes) -> dict[str, list[str]]:
    try:
        return parse_qs(body.decode("utf-8"), max_num_fields=200)
    except (UnicodeDecodeError, ValueError):
        return {}


def _verified(integration: Integration, token: str | None, form: dict[str, list[str]] | None) -> bool:
    if integration.provider == "bitrix24" and form is not None:
        try:
            expected = decrypt_credentials(integration.credentials_encrypted).get("application_token")
        except CredentialsUnreadable:
            expected = None
        if expected:
            return _same((form.get("auth[application_token]") or [""])[0], str(expected))
    return _same(token, integration.webhook_secret)


async def receive(
    db: AsyncSession, integration_id: int, token: str | None, body: bytes, content_type: str
) -> WebhookAccepted:
    integration = await find_integration(db, integration_id)
    form = _parse_form(body) if "application/x-www-form-urlencoded" in content_type.lower() else None
    if integration is None or not _verified(integration, token, form):
        raise InvalidWebhookToken()
    if not integration.enabled:
        return WebhookAccepted(queued=False)
    try:
        known = provider_entities(integration.provider)
    except Exception:  # the provider's plugin is not installed (any more)
        log.warning("webhook_provider_missing", provider=integration.provider)
        return WebhookAccepted(queued=False)
    entities = match_entities(_remote_types(body, form), known)
    if not entities:
        return WebhookAccepted(queued=False)

    from crm.sync.service import start_sync

    try:
        job = await start_sync(
            db,
            organization_id=integration.organization_id,
            integration_id=integration.id,
            entities=entities,
            full=False,
            trigger="webhook",
        )
    except AppError as exc:
        if exc.status != 409:
            raise
        job_id = exc.extra.get("job_id")
        return WebhookAccepted(queued=False, job_id=int(job_id) if job_id else None, entities=entities)
    return WebhookAccepted(queued=True, job_id=job.id, entities=entities)
