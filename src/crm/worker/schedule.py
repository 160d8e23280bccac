"""Periodic jobs run by `crm beat`; each job lives in its feature's `jobs.py`."""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

beat_schedule: dict[str, dict[str, Any]] = {
    "purge-expired-sessions": {
        "task": "auth.purge_expired_sessions",
        "schedule": crontab(minute="17", hour="3"),
    },
    "sync-enqueue-due": {"task": "sync.enqueue_due", "schedule": 60.0},
    "sync-reap-stale": {"task": "sync.reap_stale", "schedule": 60.0},
    "imports-requeue-queued": {"task": "imports.requeue_queued", "schedule": 60.0},
    "imports-reap-stale": {"task": "imports.reap_stale", "schedule": 60.0},
    "sync-requeue-queued": {"task": "sync.requeue_queued", "schedule": 60.0},
    # Events a lost after-commit nudge left in the outbox, and webhook retries that came due.
    "outbox-sweep": {"task": "outbox.sweep", "schedule": 15.0},
    "webhooks-sweep": {"task": "webhooks.sweep", "schedule": 30.0},
    "task-reminders": {"task": "notifications.task_reminders", "schedule": 300.0},
    "purge-idempotency-keys": {
        "task": "system.purge_idempotency_keys",
        "schedule": crontab(minute="41"),
    },
}
