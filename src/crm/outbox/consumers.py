"""The relay's consumers, in order: webhook fan-out, then notifications for people."""

from __future__ import annotations

from crm.notifications.events import notify_from_events
from crm.outbox.relay import CONSUMERS, Consumer
from crm.webhooks.service import fan_out

DEFAULT: tuple[Consumer, ...] = (fan_out, notify_from_events)


def register() -> None:
    for consumer in DEFAULT:
        if consumer not in CONSUMERS:
            CONSUMERS.append(consumer)


register()
