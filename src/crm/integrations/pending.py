"""Records named by inbound provider events, waiting for a targeted read by the next job.

The webhook adds the ids to a Redis set per integration and entity; a provider that supports targeted
reads (Bitrix24) reads those records first and removes their ids once the page holding them is stored.
When Redis is away the event still queues an incremental sync, which finds changed records by their
modification time; only deletions then wait for the next full sync.
"""

from __future__ import annotations

#: How long unread ids are kept (a job normally reads them within seconds).
PENDING_TTL_SECONDS = 7 * 24 * 3600


def pending_key(integration_id: int, entity: str) -> str:
    return f"crm:sync:pending:{integration_id}:{entity}"
