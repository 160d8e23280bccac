"""A literal path segment wins over a `{parameter}` for every method.

The router tries routes in order and takes the first whose path and method both match. So
`PATCH /admin/integrations/test`, where only `POST` is declared for the literal path, would be taken
by `PATCH /admin/integrations/{integration_id}` and answered 422 (`test` is not an id). The app-wide
dependency `literal_segments_win` turns that capture into the 405 (with `Allow` listing the literal
path's methods) the literal path deserves. Which paths are siblings is worked out once per process
from the OpenAPI document, the same source the 405 handler reads `Allow` from.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import Request
from starlette.exceptions import HTTPException

_PARAM = re.compile(r"^\{[^{}/]+\}$")
_METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE"})


def _regex(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^{}/]*?\\\}", "[^/]+", re.escape(template)) + "$")


def literal_siblings(
    paths: dict[str, dict[str, Any]],
) -> dict[str, list[tuple[re.Pattern[str], frozenset[str]]]]:
    """For each path template with parameters: the templates that have a literal segment where it
    has a parameter (and agree elsewhere), with their methods."""
    split = {t: t.strip("/").split("/") for t in paths}
    siblings: dict[str, list[tuple[re.Pattern[str], frozenset[str]]]] = {}
    for template, segments in split.items():
        found = []
        for other, other_segments in split.items():
            if other == template or len(other_segments) != len(segments):
                continue
            literal_somewhere = False
            for mine, theirs in zip(segments, other_segments, strict=True):
                if mine == theirs:
                    continue
                if _PARAM.match(mine) and not _PARAM.match(theirs):
                    literal_somewhere = True
                    continue
                break
            else:
                if literal_somewhere:
                    methods = frozenset(m.upper() for m in paths[other] if m.upper() in _METHODS)
                    found.append((_regex(other), methods))
        if found:
            siblings[template] = found
    return siblings


def _matched_template(request: Request) -> str | None:
    context = (request.scope.get("fastapi") or {}).get("effective_route_context")
    template = getattr(context, "path_format", None)
    if template is None:
        template = getattr(request.scope.get("route"), "path_format", None)
    return str(template) if template else None


async def literal_segments_win(request: Request) -> None:
    """App-wide dependency: 405 when a `{parameter}` route caught a path that is one of its literal
    siblings (a literal segment wins, whatever the method)."""
    template = _matched_template(request)
    if template is None or "{" not in template:
        return
    app = request.app
    table: dict[str, list[tuple[re.Pattern[str], frozenset[str]]]] | None = getattr(
        app.state, "literal_siblings", None
    )
    if table is None:
        try:
            table = literal_siblings(app.openapi().get("paths", {}))
        except Exception:  # a broken document must not break routing
            table = {}
        app.state.literal_siblings = table
    path = request.scope["path"]
    for regex, methods in table.get(template, ()):
        if regex.match(path) and request.method not in methods:
            raise HTTPException(405, "Method Not Allowed")
