"""The OpenAPI document helps its readers (SPEC §20.10): the organization is a security scheme, every
create's example is accepted as-is, errors are documented as problem+json, and the document is built
when the process starts."""

from __future__ import annotations

import time
from typing import Any

from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Contact
from tests.factories import Factory

#: Creates whose example needs state the example cannot know (a token, a live provider, an id).
NOT_STANDALONE = ("/api/v1/auth/", "/api/v1/admin/", "/api/v1/integrations/", "/api/v1/imports")


def _creates(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path, operations in document["paths"].items():
        post = operations.get("post")
        if post is None or "{" in path or not path.startswith("/api/v1/") or path.startswith(NOT_STANDALONE):
            continue
        media = post.get("requestBody", {}).get("content", {}).get("application/json")
        if media is not None:
            out.append((path, media))
    # A deal goes into the default pipeline: create pipelines first.
    return sorted(out, key=lambda item: item[0] != "/api/v1/pipelines")


async def test_document_is_built_at_startup(app: Any, client: AsyncClient) -> None:
    assert app.openapi_schema is not None  # built by the lifespan, before any request
    started = time.perf_counter()
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert time.perf_counter() - started < 1.0


async def test_every_create_example_is_accepted_as_is(
    client: AsyncClient, factory: Factory, db: AsyncSession
) -> None:
    document = (await client.get("/openapi.json")).json()
    owner = await factory.actor("owner")
    creates = _creates(document)
    paths = [path for path, _ in creates]
    for expected in (
        "/api/v1/contacts",
        "/api/v1/companies",
        "/api/v1/deals",
        "/api/v1/tasks",
        "/api/v1/projects",
    ):
        assert expected in paths
    for path, media in creates:
        assert "example" in media, path
        response = await client.post(path, json=media["example"], headers=owner.headers)
        assert response.status_code == 201, (path, media["example"], response.text)
    stored = await db.scalar(
        select(func.count()).select_from(Contact).where(Contact.organization_id == owner.org_id)
    )
    assert stored == 1


async def test_every_json_body_has_an_example(client: AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            media = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if media is not None:
                assert "example" in media, (method, path)
    contact = document["paths"]["/api/v1/contacts"]["post"]["requestBody"]["content"]["application/json"]
    assert contact["example"]["phone"] != "string"


async def test_organization_is_a_security_scheme(client: AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    scheme = document["components"]["securitySchemes"]["Organization"]
    assert scheme == {
        "type": "apiKey",
        "in": "header",
        "name": "X-Organization-ID",
        "description": scheme["description"],
    }
    contacts = document["paths"]["/api/v1/contacts"]["get"]
    assert contacts["security"] == [{"OAuth2PasswordBearer": [], "Organization": []}, {"APIKeyHeader": []}]
    assert all(p["name"] != "X-Organization-ID" for p in contacts.get("parameters", []))
    # Routes with the organization in the path do not ask for it.
    members = document["paths"]["/api/v1/organizations/{organization_id}/members"]["get"]
    assert all("Organization" not in requirement for requirement in members["security"])


async def test_errors_are_documented_as_problem_json(client: AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    seen = 0
    for operations in document["paths"].values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                if status[0] in "45":
                    assert list(response["content"]) == ["application/problem+json"], (status, response)
                    seen += 1
    assert seen > 100
    assert "HTTPValidationError" not in document["components"]["schemas"]
    # Any operation may find the database away (503 database_unavailable, with Retry-After).
    for path, operations in document["paths"].items():
        if path.startswith("/api/v1/"):
            for method, operation in operations.items():
                assert "503" in operation["responses"], (method, path)
    created = document["paths"]["/api/v1/contacts"]["post"]["responses"]["503"]
    assert "outcome_unknown" in created["description"]


async def test_the_header_still_works_and_a_bad_one_is_422(client: AsyncClient, factory: Factory) -> None:
    owner = await factory.actor("owner")
    response = await client.get("/api/v1/contacts", headers=owner.headers)
    assert response.status_code == 200, response.text
    response = await client.get("/api/v1/contacts", headers={**owner.auth, "X-Organization-ID": "abc"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["loc"] == ["header", "X-Organization-ID"]
    response = await client.get("/api/v1/contacts", headers={**owner.auth, "X-Organization-ID": "0"})
    assert response.status_code == 422
