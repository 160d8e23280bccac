"""Every dependency of every route is a coroutine (or an async generator): FastAPI runs a plain
function in a worker thread, a hop that costs about 0.1 ms of CPU per call and request."""

from __future__ import annotations

import inspect
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import OAuth2PasswordRequestForm

from crm.api import api_v1_routers, root_routers

#: FastAPI's own form class (the OAuth2 token endpoint for Swagger UI's Authorize).
ALLOWED: set[Any] = {OAuth2PasswordRequestForm}


def _is_async(call: Any) -> bool:
    if not inspect.isroutine(call) and not inspect.isclass(call):
        call = call.__call__  # an instance (the security schemes)
    return inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call)


def _plain_calls(dependant: Dependant, route: str) -> list[str]:
    found = []
    for sub in dependant.dependencies:
        if sub.call is not None and sub.call not in ALLOWED and not _is_async(sub.call):
            found.append(f"{route}: {getattr(sub.call, '__qualname__', sub.call)}")
        found += _plain_calls(sub, route)
    return found


def test_no_dependency_is_run_in_a_worker_thread() -> None:
    routers = [*api_v1_routers, *root_routers]
    routes = [route for router in routers for route in router.routes if isinstance(route, APIRoute)]
    assert len(routes) > 150
    plain = [call for route in routes for call in _plain_calls(route.dependant, route.path)]
    endpoints = [route.path for route in routes if not _is_async(route.endpoint)]
    assert plain == []
    assert endpoints == []
