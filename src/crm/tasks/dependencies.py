from __future__ import annotations

from crm.core.errors import Forbidden
from crm.organizations.dependencies import Tenant, TenantDep


async def require_tasks_write_or_write_own(tenant: TenantDep) -> Tenant:
    """Editing a task needs `tasks:write` (any task) or `tasks:write_own` (the service then checks
    that the task is the caller's)."""
    if not (tenant.can("tasks:write") or tenant.can("tasks:write_own")):
        raise Forbidden("This needs the 'tasks:write' or 'tasks:write_own' permission")
    return tenant
