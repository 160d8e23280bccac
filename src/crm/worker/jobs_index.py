"""Imports every feature's jobs so the worker registers them."""

from crm.admin import jobs as admin_jobs  # noqa: F401
from crm.alerts import hooks as alert_hooks  # noqa: F401
from crm.auth import jobs as auth_jobs  # noqa: F401
from crm.imports import jobs as import_jobs  # noqa: F401
from crm.integrations import hooks as sync_hooks  # noqa: F401
from crm.integrations import jobs as sync_jobs  # noqa: F401
from crm.notifications import jobs as notifications_jobs  # noqa: F401
from crm.notifications import reminders as reminder_jobs  # noqa: F401
from crm.outbox import hooks as outbox_hooks  # noqa: F401
from crm.outbox import jobs as outbox_jobs  # noqa: F401
from crm.system import jobs as system_jobs  # noqa: F401
from crm.webhooks import jobs as webhook_jobs  # noqa: F401
