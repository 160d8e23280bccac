"""Records named by inbound provider events, waiting for a targeted read by the next job.

The webhook adds the ids to a Redis set per integration and entity; a provider that supports targeted
reads (Bitrix24) reads those records first and removes their ids once the page holding them is stored.
When Redis is away the event still queues an incremental sync, which finds changed records by their
modification time; only deletions then wait for the next full sync.

An event that comes while the integration has a job running cannot start one (one active job per
integration): its ids wait, and when that job succeeds `crm.integrations.hooks` starts a targeted
job for the entities it did not read.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from crm.config import get_settings

#: How long unread ids are kept (a job normally reads them within seconds).
PENDING_TTL_SECONDS = 7 * 24 * 3600


def pending_key(integration_id: int, entity: str) -> str:
    return f"crm:sync:pending:{integration_id}:{entity}"


async def waiting_entities(integration_id: int, entities: Sequence[str]) -> list[str]:
    """Those of `entities` with records waiting for a targeted read (none when Redis is away)."""
    client = Redis.from_url(get_settings().redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        async with client.pipeline(transaction=False) as pipe:
            for entity in entities:
                pipe.scard(pending_key(integration_id, entity))
            counts = await pipe.execute()
    except (RedisError, OSError):
        return []
    finally:
        await client.aclose()
    return [entity for entity, count in zip(entities, counts, strict=True) if count]
