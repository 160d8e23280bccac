"""Notifications made from domain events (an outbox consumer, run by the relay in its transaction):
a task assigned to me, a deal of mine won, a record handed to me. Whoever made the change is not
notified of it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import OutboxEvent
from crm.notifications.service import notify_users

#: Titles in the recipient-independent default language (English); emails are localized.
RECORD_NAMES = {"contact": "Contact", "company": "Company", "deal": "Deal"}


def _name(obj: dict[str, Any], entity_type: str, entity_id: int | None) -> str:
    for field in ("title", "name", "full_name"):
        if obj.get(field):
            return str(obj[field])
    parts = [obj.get("first_name"), obj.get("last_name")]
    joined = " ".join(str(p) for p in parts if p)
    return joined or f"{entity_type} {entity_id}"


def _new(changes: dict[str, Any], field: str) -> Any:
    pair = changes.get(field)
    return pair[1] if isinstance(pair, list) and len(pair) == 2 else None


async def notify_from_events(
    session: AsyncSession, organization_id: int, events: Sequence[OutboxEvent]
) -> set[int]:
    for event in events:
        payload = event.payload or {}
        obj: dict[str, Any] = payload.get("object") or {}
        changes: dict[str, Any] = payload.get("changes") or {}
        name = _name(obj, event.entity_type or "", event.entity_id)
        recipient: Any = None
        kind = title = ""
        if event.event_type == "task.assigned":
            recipient, kind, title = obj.get("assignee_id"), "task_assigned", f"Task assigned to you: {name}"
        elif event.event_type == "deal.won":
            recipient, kind, title = obj.get("owner_id"), "deal_won", f"Deal won: {name}"
        elif (
            event.entity_type in RECORD_NAMES
            and _new(changes, "owner_id") is not None
            and event.event_type.endswith((".created", ".updated", ".stage_changed"))
        ):
            recipient = _new(changes, "owner_id")
            kind = "record_assigned"
            title = f"{RECORD_NAMES[event.entity_type or '']} assigned to you: {name}"
        if not recipient or recipient == event.actor_id:
            continue
        await notify_users(
            session,
            organization_id=organization_id,
            user_ids=[int(recipient)],
            kind=kind,
            title=title,
            entity_type=event.entity_type,
            entity_id=event.entity_id,
            data={"event_id": event.id, "event_type": event.event_type, "name": name},
            dedupe_key=f"event:{event.id}:{kind}",
        )
    return set()
