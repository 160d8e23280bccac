"""Imports every feature's jobs so the worker registers them."""

from crm.auth import jobs as auth_jobs  # noqa: F401
from crm.system import jobs as system_jobs  # noqa: F401
