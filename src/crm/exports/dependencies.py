"""Export request pieces: the caller's permissions and the refusal of query parameters the entity's
list does not know (422 before any byte is streamed)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from crm.core.errors import Forbidden, UnprocessableEntity
from crm.organizations.dependencies import Tenant, require

CUSTOM_FIELD_PREFIX = "cf."


def exporter(read_permission: str) -> Callable[..., Awaitable[Tenant]]:
    """Dependency: the tenant, if the caller may run exports (`exports:run`) and read the records."""

    async def dependency(tenant: Annotated[Tenant, Depends(require("exports:run"))]) -> Tenant:
        if not tenant.can(read_permission):
            raise Forbidden(f"This needs the {read_permission!r} permission")
        return tenant

    dependency.__name__ = f"export_{read_permission.replace(':', '_')}"
    return dependency


def _query_names(dependant: Dependant) -> set[str]:
    """The query parameters a route declares: its own and its dependencies' (a short walk)."""
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def known_params_only(request: Request) -> None:
    """422 for a query parameter the route does not declare (custom field filters `cf.<key>` are
    checked against the definitions by the filters themselves): a typo must not export everything."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):  # pragma: no cover - always set by the router
        return
    declared = _query_names(route.dependant)
    unknown = sorted(
        {k for k in request.query_params if k not in declared and not k.startswith(CUSTOM_FIELD_PREFIX)}
    )
    if unknown:
        errors: list[dict[str, Any]] = [
            {"loc": ["query", name], "msg": "unknown query parameter", "type": "extra_forbidden"}
            for name in unknown
        ]
        raise UnprocessableEntity(f"{unknown[0]}: unknown query parameter", errors=errors)
