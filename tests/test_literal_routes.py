"""A literal path segment wins over `{id}` for every method: a method the literal path does not
serve is 405 with `Allow`, never a 422 from the `{id}` route that happens to serve it."""

from __future__ import annotations

import re
from typing import Any

from httpx import AsyncClient

from crm.core.routing import literal_siblings
from tests.factories import Factory, assert_problem

PARAM = re.compile(r"\{[^{}/]+\}")


def cases(paths: dict[str, dict[str, Any]]) -> list[tuple[str, str, list[str]]]:
    """(method, concrete literal path, its methods) for every literal sibling of a `{param}` path and
    every method the `{param}` path serves that the literal one does not."""
    found = []
    by_regex = {}
    for template, ops in paths.items():
        regex = "^" + PARAM.sub("[^/]+", re.escape(template).replace(r"\{", "{").replace(r"\}", "}")) + "$"
        by_regex[template] = (re.compile(regex), sorted(m.upper() for m in ops))
    for template, siblings in literal_siblings(paths).items():
        param_methods = {m.upper() for m in paths[template]}
        for regex, methods in siblings:
            literal = next(t for t, (r, _) in by_regex.items() if r.pattern == regex.pattern)
            concrete = PARAM.sub("1", literal)
            for method in sorted(param_methods - methods):
                found.append((method, concrete, sorted(methods)))
    return found


async def test_every_literal_sibling_answers_405_with_allow(
    app: Any, client: AsyncClient, factory: Factory
) -> None:
    owner = await factory.actor("owner")
    found = cases(app.openapi()["paths"])
    # The two schemathesis found, among the rest.
    assert ("PATCH", "/api/v1/admin/integrations/test", ["POST"]) in found
    assert any(m == "PATCH" and p == "/api/v1/products/folders" for m, p, _ in found)

    wrong = []
    for method, path, methods in found:
        response = await client.request(method, path, json={}, headers=owner.headers)
        if response.status_code != 405 or response.headers.get("allow") != ", ".join(methods):
            wrong.append(
                (method, path, response.status_code, response.headers.get("allow"), response.text[:200])
            )
            continue
        assert_problem(response, 405, "method_not_allowed")
    assert not wrong, wrong


async def test_the_param_route_still_serves_ids_and_the_literal_its_methods(
    client: AsyncClient, factory: Factory
) -> None:
    admin = await factory.actor("admin")

    by_id = await client.patch("/api/v1/admin/integrations/999999", json={"name": "x"}, headers=admin.headers)
    bad_id = await client.patch("/api/v1/admin/integrations/abc", json={"name": "x"}, headers=admin.headers)
    literal = await client.post(
        "/api/v1/admin/integrations/test", json={"provider": "nope"}, headers=admin.headers
    )
    folders = await client.get("/api/v1/products/folders", headers=admin.headers)

    assert_problem(by_id, 404, "not_found")
    assert_problem(bad_id, 422, "validation_error")
    assert_problem(literal, 422, "unknown_provider")
    assert folders.status_code == 200, folders.text
