"""Writing events: one `OutboxEvent` row added to the writer's session (flushed with the change,
no extra round trip) and, after commit, a nudge to the relay."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import structlog
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncSession

from crm.activities.service import jsonable
from crm.core.db import on_commit
from crm.models import OutboxEvent
from crm.outbox.events import record_events
from crm.outbox.queue import Wakeup

log = structlog.get_logger(__name__)

#: Commits within this window share one nudge to the relay.
KICK_DELAY_SECONDS = 0.02
#: Columns never put into an event.
HIDDEN_FIELDS = frozenset({"search_vector", "password_hash", "secret", "credentials"})


class _Kicker:
    """Sends the relay job at most once per `KICK_DELAY_SECONDS` per process. An event committed
    while a nudge is pending is picked up by it (the nudge leaves after that commit)."""

    pending = False

    def kick(self) -> None:
        if self.pending:
            return
        self.pending = True
        try:
            asyncio.get_running_loop().call_later(KICK_DELAY_SECONDS, self._fire)
        except RuntimeError:  # no loop: send at once
            self._fire()

    def _fire(self) -> None:
        self.pending = False
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            _send_relay()
            return
        task = loop.run_in_executor(None, _send_relay)
        task.add_done_callback(lambda _: None)


#: The relay job's wake-up: a running or queued relay sees this commit; the broker away: the
#: beat sweep relays the rows later.
RELAY = Wakeup("crm:outbox:relay")


def _send_relay() -> None:
    from crm.outbox.jobs import relay_outbox

    RELAY.notify(relay_outbox.apply_async)


kicker = _Kicker()


def _kick_after_commit(session: AsyncSession) -> None:
    if not session.info.get("outbox_kick"):
        session.info["outbox_kick"] = True
        on_commit(session, _kicked, session)


def _kicked(session: AsyncSession) -> None:
    session.info.pop("outbox_kick", None)
    kicker.kick()


def object_snapshot(row: Any) -> dict[str, Any]:
    """The row's loaded column values (nothing is loaded for it, so no round trip)."""
    state = inspect(row)
    values = state.dict
    return snapshot_values(
        {attr.key: values[attr.key] for attr in state.mapper.column_attrs if attr.key in values}
    )


def snapshot_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """A record's column values as an event's `object` (hidden columns left out)."""
    return {key: jsonable(value) for key, value in values.items() if key not in HIDDEN_FIELDS}


def record_write_events(
    session: AsyncSession, entity_type: str, action: str, changes: Mapping[str, Any]
) -> list[str]:
    """The event types of one record write (see `events.record_events`) for a caller that writes
    their rows itself, in the write's transaction, shaped as `emit_record_write` shapes them; when
    there are any, the relay is nudged after commit."""
    names = record_events(entity_type, action, changes)
    if names:
        _kick_after_commit(session)
    return names


def emit(
    session: AsyncSession,
    organization_id: int,
    event_type: str,
    *,
    entity_type: str | None = None,
    entity_id: int | None = None,
    actor_id: int | None = None,
    data: Mapping[str, Any] | None = None,
) -> OutboxEvent:
    """Add one event to the session's transaction; the relay publishes it after commit."""
    event = OutboxEvent(
        organization_id=organization_id,
        event_type=event_type,
        entity_type=entity_type,
        entity_id=entity_id,
        actor_id=actor_id,
        payload=jsonable(dict(data or {})),
    )
    session.add(event)
    _kick_after_commit(session)
    return event


def emit_record_write(
    session: AsyncSession,
    organization_id: int,
    actor_id: int | None,
    entity_type: str,
    action: str,
    row: Any,
    row_id: int,
    changes: Mapping[str, Any] | None = None,
) -> None:
    """The events of one record write (see `events.record_events`), each carrying the record as
    it now is (`object`, absent after a hard delete) and what changed (`changes`)."""
    names = record_events(entity_type, action, changes or {})
    if not names:
        return
    data: dict[str, Any] = {"id": row_id, "changes": dict(changes or {})}
    if row is not None:
        data["object"] = object_snapshot(row)
    for name in names:
        emit(
            session,
            organization_id,
            name,
            entity_type=entity_type,
            entity_id=row_id,
            actor_id=actor_id,
            data=data,
        )
