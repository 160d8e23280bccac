"""Inbound provider webhooks: verify, work out which entities changed, queue a targeted sync.

Verification: the `token` query parameter of the integration's `webhook_url`, compared in constant
time with its secret. Bitrix24 events are checked by `auth[application_token]` instead when the
integration's credentials hold an `application_token`. An unknown integration and a wrong token get
the same 401, so the answer does not reveal which integrations exist.

The body only names what changed (MoySklad: `events[].meta.type`, stock notifications; Bitrix24:
`event=ONCRMDEALUPDATE` and `data[FIELDS][ID]`); the records themselves are fetched by the sync. A
Bitrix24 event also puts the record's id into the integration's pending set (`integrations.pending`),
so the job reads exactly that record (and soft-deletes it when the portal no longer has it). When a
job of the integration is already queued or running, the event is acknowledged without a new job:
that job or the next one picks the change up.

Retries and replays are harmless: each accepted event is remembered in `webhook_event` (MoySklad's
`requestId`, which its retries repeat; a Bitrix24 event's name, record, time and handler) in the same
transaction as the job it queued, and an event seen before queues nothing (`duplicate: true`).

Answers: Bitrix24 events get 202 (accepted for processing; the portal does not retry whatever the
answer); MoySklad gets 200, because it counts only 200/204 as delivered and retries anything else.
"""

from __future__ import annotations

import hashlib
import hmac
import random
from typing import Any
from urllib.parse import parse_qs

import orjson
import structlog
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from crm.admin.exceptions import InvalidWebhookToken
from crm.admin.repository import find_integration
from crm.admin.schemas import WebhookAccepted
from crm.core.redis import RedisUnavailable, SafeRedis
from crm.integrations.crypto import CredentialsUnreadable, decrypt_credentials
from crm.integrations.events import apply_deletions
from crm.integrations.pending import PENDING_TTL_SECONDS, pending_key
from crm.integrations.registry import provider_entities
from crm.models import Integration, SyncJob, WebhookEvent

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
#: Remembered events older than this are forgotten (MoySklad retries within seconds).
EVENT_MEMORY_DAYS = 3
#: Share of requests that also prune forgotten events.
PRUNE_SHARE = 0.01
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


def _first(form: dict[str, list[str]], key: str) -> str:
    return (form.get(key) or [""])[0]


def event_key(form: dict[str, list[str]] | None, request_id: str | None) -> str | None:
    """What identifies this delivery across retries and replays (None: nothing to go by)."""
    if form is not None:
        event, record = _first(form, "event").upper(), _first(form, "data[FIELDS][ID]")
        if not event or not record:
            return None
        parts = "\n".join((event, record, _first(form, "ts"), _first(form, "event_handler_id")))
        return "b24:" + hashlib.sha256(parts.encode()).hexdigest()[:64]
    if request_id:
        return "ms:" + request_id.strip()[:90]
    return None


async def _first_time(db: AsyncSession, integration_id: int, key: str) -> bool:
    """Remember the event; False when it was seen before."""
    inserted = await db.scalar(
        pg_insert(WebhookEvent)
        .values(integration_id=integration_id, event_key=key)
        .on_conflict_do_nothing()
        .returning(WebhookEvent.event_key)
    )
    if random.random() < PRUNE_SHARE:  # noqa: S311 - sampling, not a secret
        await db.execute(
            text("DELETE FROM webhook_event WHERE created_at < now() - make_interval(days => :days)"),
            {"days": EVENT_MEMORY_DAYS},
        )
    return inserted is not None


async def _mark_pending(
    redis: SafeRedis | None, integration_id: int, entity: str, form: dict[str, list[str]]
) -> None:
    record = _first(form, "data[FIELDS][ID]").strip()
    if redis is None or not record or not record.isdigit() or len(record) > 20:
        return
    key = pending_key(integration_id, entity)

    async def add(client: Any) -> None:
        async with client.pipeline(transaction=False) as pipe:
            pipe.sadd(key, record)
            pipe.expire(key, PENDING_TTL_SECONDS)
            await pipe.execute()

    try:
        await redis.run(add)
    except RedisUnavailable:
        log.warning("webhook_pending_not_recorded", integration_id=integration_id, entity=entity)


async def receive(
    db: AsyncSession,
    integration_id: int,
    token: str | None,
    body: bytes,
    content_type: str,
    *,
    redis: SafeRedis | None = None,
    request_id: str | None = None,
) -> tuple[WebhookAccepted, int]:
    """Verify, de-duplicate and queue; the answer and its status code (202 Bitrix24, 200 MoySklad)."""
    integration = await find_integration(db, integration_id)
    form = _parse_form(body) if "application/x-www-form-urlencoded" in content_type.lower() else None
    if integration is None or not _verified(integration, token, form):
        raise InvalidWebhookToken()
    status = 202 if form is not None else 200
    if not integration.enabled:
        return WebhookAccepted(queued=False), status
    try:
        known = provider_entities(integration.provider)
    except Exception:  # the provider's plugin is not installed (any more)
        log.warning("webhook_provider_missing", provider=integration.provider)
        return WebhookAccepted(queued=False), status
    entities = match_entities(_remote_types(body, form), known)
    if not entities:
        return WebhookAccepted(queued=False), status
    key = event_key(form, request_id)
    if key is not None and not await _first_time(db, integration.id, key):
        return WebhookAccepted(queued=False, entities=entities, duplicate=True), status
    if form is not None and integration.provider == "bitrix24":
        for entity in entities:
            await _mark_pending(redis, integration.id, entity, form)
    if form is None:  # records deleted at the source go at once (MoySklad `DELETE` events)
        await apply_deletions(db, integration, body, redis=redis)

    from crm.sync.service import start_event_sync

    job = await start_event_sync(db, integration, entities)
    if not isinstance(job, SyncJob):
        return WebhookAccepted(queued=False, job_id=job, entities=entities), status
    return WebhookAccepted(queued=True, job_id=job.id, entities=entities), status
