"""The catalog of domain events and how a record write becomes events.

An event name is `<entity>.<what>`. Subscriptions name events exactly, `<entity>.*` or `*`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: Every event there is. A subscription to anything else is refused.
EVENT_TYPES: frozenset[str] = frozenset(
    {
        *(f"contact.{a}" for a in ("created", "updated", "deleted", "restored")),
        *(f"company.{a}" for a in ("created", "updated", "deleted", "restored")),
        *(f"deal.{a}" for a in ("created", "updated", "stage_changed", "won", "lost", "deleted", "restored")),
        *(f"task.{a}" for a in ("created", "updated", "assigned", "completed", "deleted")),
        *(f"project.{a}" for a in ("created", "updated", "status_changed", "deleted", "restored")),
        *(f"support.{a}" for a in ("created", "updated", "decided", "deleted")),
        "sync.succeeded",
        "sync.failed",
        "import.finished",
        "alert.raised",
        "webhook.test",
    }
)
ENTITIES: frozenset[str] = frozenset(name.split(".", 1)[0] for name in EVENT_TYPES)


def valid_pattern(pattern: str) -> bool:
    if pattern == "*" or pattern in EVENT_TYPES:
        return True
    entity, _, rest = pattern.partition(".")
    return rest == "*" and entity in ENTITIES


def matches(patterns: Iterable[str], event_type: str) -> bool:
    """Whether a subscription with these patterns receives `event_type` (`webhook.test` is only
    ever sent to the one subscription being tested)."""
    entity = event_type.split(".", 1)[0]
    return any(pattern == event_type or pattern == "*" or pattern == f"{entity}.*" for pattern in patterns)


def _new(changes: Mapping[str, Any], field: str) -> Any:
    pair = changes.get(field)
    return pair[1] if isinstance(pair, list | tuple) and len(pair) == 2 else None


def record_events(entity_type: str, action: str, changes: Mapping[str, Any]) -> list[str]:
    """The events one record write makes: `task` `updated` with a new assignee and status `done`
    is `task.updated`, `task.assigned` and `task.completed`; an entity outside the catalog none."""
    if entity_type not in ENTITIES:
        return []
    if entity_type == "deal" and action in ("updated", "stage_changed", "status_changed"):
        out = ["deal.stage_changed"] if action == "stage_changed" else []
        status = _new(changes, "status")
        if status in ("won", "lost"):
            out.append(f"deal.{status}")
        return out or ["deal.updated"]
    if action == "status_changed":
        action = "status_changed" if entity_type == "project" else "updated"
    name = f"{entity_type}.{action}"
    if name not in EVENT_TYPES:
        return []
    out = [name]
    if entity_type == "task" and action in ("created", "updated"):
        if _new(changes, "assignee_id") is not None:
            out.append("task.assigned")
        if _new(changes, "status") == "done":
            out.append("task.completed")
    return out
