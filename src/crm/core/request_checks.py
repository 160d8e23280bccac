"""Checks every `/api/v1` operation makes of the request itself, before its own dependencies run:

* query parameters the operation does not declare → 422 `unknown_parameter` naming them (SPEC §20.16),
  as unknown body fields are: a typo such as `?serach=` must not silently return everything.
  `cf.<key>` custom-field filters are known on the operations that take them;
* a body sent to a JSON operation with another `Content-Type` → 415 `unsupported_media_type` (§20.12).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from crm.core.errors import AppError

F = TypeVar("F", bound=Callable[..., Any])

CUSTOM_FIELD_PREFIX = "cf."
_CUSTOM_FIELDS_MARK = "__crm_custom_field_filters__"


class UnknownParameter(AppError):
    status, code = 422, "unknown_parameter"


class UnsupportedMediaType(AppError):
    status, code = 415, "unsupported_media_type"


def takes_custom_field_filters(dependency: F) -> F:
    """Marks a dependency that reads `cf.<key>` query parameters (they are then known)."""
    setattr(dependency, _CUSTOM_FIELDS_MARK, True)
    return dependency


class _Declared:
    __slots__ = ("custom_fields", "json_body", "names")

    def __init__(self, route: APIRoute) -> None:
        self.names: frozenset[str] = frozenset()
        self.custom_fields = False
        self._walk(route.dependant)
        body = route.body_field
        media = getattr(getattr(body, "field_info", None), "media_type", "application/json") if body else None
        self.json_body = body is not None and media == "application/json"

    def _walk(self, dependant: Dependant) -> None:
        self.names |= {p.alias for p in dependant.query_params}
        if getattr(dependant.call, _CUSTOM_FIELDS_MARK, False):
            self.custom_fields = True
        for sub in dependant.dependencies:
            self._walk(sub)


_declared: dict[int, _Declared] = {}


def _of(route: APIRoute) -> _Declared:
    found = _declared.get(id(route))
    if found is None:
        found = _declared[id(route)] = _Declared(route)
    return found


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def check_request(request: Request) -> None:
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):  # pragma: no cover - always set by the router
        return
    declared = _of(route)
    unknown = sorted(
        {
            name
            for name in request.query_params
            if name not in declared.names
            and not (declared.custom_fields and name.startswith(CUSTOM_FIELD_PREFIX))
        }
    )
    if unknown:
        errors: list[dict[str, Any]] = [
            {"loc": ["query", name], "msg": "Unknown query parameter", "type": "unknown_parameter"}
            for name in unknown
        ]
        listed = ", ".join(name[:64] for name in unknown)
        raise UnknownParameter(f"Unknown query parameter: {listed}", errors=errors, parameters=unknown)
    if declared.json_body:
        content_type = request.headers.get("content-type")
        has_body = content_type is not None or (
            request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
        )
        if has_body and not _is_json(content_type or ""):
            raise UnsupportedMediaType(
                "This operation takes a JSON body: send it with Content-Type: application/json",
                accepted=["application/json"],
            )
