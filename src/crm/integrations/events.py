"""What an inbound provider event changes at once, before any sync runs.

A provider may name records its event says were deleted at the source (the optional provider member
`event_deletions`, see `base.py`). Their local rows are soft-deleted right in the request that received
the event, so they leave lists without waiting for a full run; a record that shows up again in a later
sync is restored. Only tables with `deleted_at` are touched: nothing is removed for good this way. The
event still queues its sync.
"""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from crm.core.cache import OrgCache
from crm.core.redis import SafeRedis
from crm.integrations import sinks
from crm.integrations.registry import get_provider
from crm.models import Integration

log = structlog.get_logger(__name__)


async def apply_deletions(
    session: AsyncSession, integration: Integration, body: bytes, *, redis: SafeRedis | None = None
) -> int:
    """Soft-delete the rows an event body says the source deleted; how many rows changed."""
    try:
        provider = get_provider(integration.provider)
    except Exception:  # the provider's plugin is not installed (any more)
        return 0
    named = getattr(provider, "event_deletions", None)
    if named is None:
        return 0
    try:
        payload: Any = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return 0
    changed = 0
    for target, external_ids in named(payload).items():
        spec = sinks.TARGET_SPECS.get(target)
        if spec is None or "deleted_at" not in spec.table.columns or not external_ids:
            continue
        changed += await sinks.remove(
            session,
            organization_id=integration.organization_id,
            source=integration.provider,
            target_name=target,
            external_ids=external_ids,
        )
    if changed:
        log.info("webhook_deletions_applied", integration_id=integration.id, rows=changed)
        if redis is not None:
            with contextlib.suppress(Exception):  # lists' cached totals; they expire anyway
                await OrgCache(redis, 0).bump(integration.organization_id)
    return changed
