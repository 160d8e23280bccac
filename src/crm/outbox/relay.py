"""The relay: publishes the outbox to its consumers, in order per organization.

One organization at a time is held by a transaction-scoped advisory lock, so two relays (the
after-commit nudge and the beat sweep, or two workers) never publish one organization's events out
of order or twice. Within the lock the organization's unpublished events are read in id order
(`FOR UPDATE SKIP LOCKED`), handed to every consumer — webhook fan-out (a delivery row per event
and matching subscription, unique per pair), notifications for people — and marked published, all
in the same transaction. A relay killed midway rolls back: the events stay unpublished and the
next relay publishes them once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import BigInteger, any_, bindparam, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.core.db import session_scope
from crm.models import OutboxEvent

#: A consumer takes a batch of one organization's events (in order) inside the relay's
#: transaction and returns the webhook ids that now have deliveries to send.
Consumer = Callable[[AsyncSession, int, Sequence[OutboxEvent]], Awaitable[set[int]]]
CONSUMERS: list[Consumer] = []

LOCK_CLASS = 71_012
LOCK_NOT_AVAILABLE = "55P03"
BATCH = 500
KEEP_PUBLISHED = timedelta(days=30)
PURGE_BATCH = 5000


@dataclass
class RelayResult:
    events: int = 0
    organizations: int = 0
    webhooks: set[int] = field(default_factory=set)


async def pending_organizations(session: AsyncSession) -> list[int]:
    rows = await session.scalars(
        select(OutboxEvent.organization_id).where(OutboxEvent.published_at.is_(None)).distinct()
    )
    return list(rows)


async def relay_organization(session: AsyncSession, organization_id: int, result: RelayResult) -> bool:
    """Publish one batch of the organization's events; True when more may be waiting. Another
    relay holding the organization is waited for (its commit may precede events it did not see)."""
    await session.execute(text("SET LOCAL lock_timeout = '15s'"))
    await session.execute(select(func.pg_advisory_xact_lock(LOCK_CLASS, organization_id)))
    events = (
        await session.scalars(
            select(OutboxEvent)
            .where(OutboxEvent.organization_id == organization_id, OutboxEvent.published_at.is_(None))
            .order_by(OutboxEvent.id)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        )
    ).all()
    if not events:
        return True
    for consumer in CONSUMERS:
        result.webhooks |= await consumer(session, organization_id, events)
    await session.execute(
        update(OutboxEvent)
        .where(OutboxEvent.id == any_(bindparam("ids", [e.id for e in events], type_=ARRAY(BigInteger))))
        .values(published_at=datetime.now(UTC))
    )
    result.events += len(events)
    return len(events) == BATCH


async def relay(maker: async_sessionmaker[AsyncSession], *, max_batches: int = 200) -> RelayResult:
    """Publish everything unpublished (each organization batch in its own transaction)."""
    result = RelayResult()
    async with maker() as session:
        organizations = await pending_organizations(session)
    for organization_id in organizations:
        result.organizations += 1
        for _ in range(max_batches):
            try:
                async with session_scope(maker) as session:
                    more = await relay_organization(session, organization_id, result)
            except DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                    raise
                break  # the relay holding the organization (or the next sweep) carries on
            if not more:
                break
    return result


async def purge_published(session: AsyncSession) -> int:
    """Drop events published long ago (their delivery log goes with them), a bounded batch a run."""
    cutoff = datetime.now(UTC) - KEEP_PUBLISHED
    old = (
        select(OutboxEvent.id)
        .where(OutboxEvent.created_at < cutoff, OutboxEvent.published_at.is_not(None))
        .limit(PURGE_BATCH)
    )
    result = await session.execute(
        delete(OutboxEvent).where(OutboxEvent.id.in_(old)).returning(OutboxEvent.id)
    )
    return len(result.all())
