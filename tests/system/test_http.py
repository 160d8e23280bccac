"""Behaviour every endpoint shares (core/middleware.py, core/errors.py, main.py): request ids,
problem details for routing errors, the body cap, security headers, CORS, docs, trailing slashes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from httpx import AsyncClient

from crm.config import Settings

PROBLEM = "application/problem+json"
LOGIN = "/api/v1/auth/login"


def assert_problem(response: object, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"] == PROBLEM  # type: ignore[attr-defined]
    body: dict[str, object] = response.json()  # type: ignore[attr-defined]
    assert body["status"] == status
    assert body["code"] == code
    assert {"type", "title", "detail"} <= body.keys()
    return body


class TestRequestId:
    async def test_echoed_when_sent(self, client: AsyncClient) -> None:
        response = await client.get("/health", headers={"X-Request-ID": "abc-123.req:7"})
        assert response.headers["x-request-id"] == "abc-123.req:7"

    async def test_generated_when_absent(self, client: AsyncClient) -> None:
        first = (await client.get("/health")).headers["x-request-id"]
        second = (await client.get("/health")).headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", first)
        assert first != second

    async def test_unsafe_value_replaced(self, client: AsyncClient) -> None:
        response = await client.get("/health", headers={"X-Request-ID": "bad value\twith spaces"})
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])

    async def test_on_error_responses_too(self, client: AsyncClient) -> None:
        response = await client.get("/nowhere", headers={"X-Request-ID": "err-1"})
        assert response.headers["x-request-id"] == "err-1"


class TestRoutingErrors:
    async def test_unknown_route_is_404_problem(self, client: AsyncClient) -> None:
        assert_problem(await client.get("/api/v1/no-such-thing"), 404, "not_found")

    async def test_allow_lists_every_method_of_the_path(self, client: AsyncClient) -> None:
        spec = (await client.get("/openapi.json")).json()
        declared = sorted(m.upper() for m in spec["paths"]["/api/v1/organizations/{organization_id}"])
        assert len(declared) > 1
        response = await client.request("OPTIONS", "/api/v1/organizations/1")
        assert_problem(response, 405, "method_not_allowed")
        assert response.headers["allow"] == ", ".join(declared)

    async def test_wrong_method_is_405_problem(self, client: AsyncClient) -> None:
        response = await client.delete("/health")
        assert_problem(response, 405, "method_not_allowed")
        assert "GET" in response.headers["allow"]


class TestBodyCap:
    async def test_json_over_one_mib_is_413(self, client: AsyncClient) -> None:
        body = b'{"email": "a@example.com", "password": "' + b"x" * (1024 * 1024) + b'"}'
        response = await client.post(LOGIN, content=body, headers={"Content-Type": "application/json"})
        assert_problem(response, 413, "payload_too_large")

    async def test_streamed_body_without_length_is_413(self, client: AsyncClient) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"email": "a@example.com", "password": "'
            for _ in range(17):
                yield b"x" * 65536
            yield b'"}'

        response = await client.post(LOGIN, content=chunks(), headers={"Content-Type": "application/json"})
        assert_problem(response, 413, "payload_too_large")

    async def test_under_the_cap_is_processed(self, client: AsyncClient) -> None:
        response = await client.post(LOGIN, json={"email": "a@example.com", "password": "x" * 500_000})
        assert response.status_code == 422  # too long a password: validated, not refused for size


class TestValidationErrors:
    async def test_422_with_errors_array(self, client: AsyncClient) -> None:
        response = await client.post(LOGIN, json={"email": "a@example.com"})
        body = assert_problem(response, 422, "validation_error")
        errors = body["errors"]
        assert isinstance(errors, list)
        assert errors
        for item in errors:
            assert {"loc", "msg", "type"} <= item.keys()
        assert ["body", "password"] in [e["loc"] for e in errors]

    async def test_unknown_body_field_rejected(self, client: AsyncClient) -> None:
        response = await client.post(
            LOGIN, json={"email": "a@example.com", "password": "secret-pass", "is_superuser": True}
        )
        body = assert_problem(response, 422, "validation_error")
        assert any(e["type"] == "extra_forbidden" for e in body["errors"])  # type: ignore[attr-defined]

    async def test_body_not_utf8(self, client: AsyncClient) -> None:
        response = await client.post(
            LOGIN, content=b"\xef9\x11", headers={"Content-Type": "application/json"}
        )
        body = assert_problem(response, 422, "validation_error")
        assert body["errors"][0]["type"] == "json_invalid"  # type: ignore[index]

    async def test_malformed_json(self, client: AsyncClient) -> None:
        response = await client.post(
            LOGIN, content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert_problem(response, 422, "validation_error")


class TestSecurityHeaders:
    @pytest.mark.parametrize("path", ["/health", "/nowhere", "/openapi.json"])
    async def test_nosniff_everywhere(self, client: AsyncClient, path: str) -> None:
        response = await client.get(path)
        assert response.headers["x-content-type-options"] == "nosniff"


class TestCors:
    async def test_preflight_from_configured_origin(self, client: AsyncClient, settings: Settings) -> None:
        origin = settings.cors_origin_list[0]
        response = await client.options(
            LOGIN,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,authorization,x-organization-id",
            },
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == origin
        assert "POST" in response.headers["access-control-allow-methods"]

    async def test_preflight_from_other_origin_refused(self, client: AsyncClient) -> None:
        response = await client.options(
            LOGIN,
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert response.status_code == 400
        assert "access-control-allow-origin" not in response.headers

    async def test_simple_request_exposes_headers(self, client: AsyncClient, settings: Settings) -> None:
        origin = settings.cors_origin_list[0]
        response = await client.get("/health", headers={"Origin": origin})
        assert response.headers["access-control-allow-origin"] == origin
        assert "x-request-id" in response.headers["access-control-expose-headers"].lower()

    async def test_never_wildcard_with_credentials(self, client: AsyncClient, settings: Settings) -> None:
        origin = settings.cors_origin_list[0]
        response = await client.get("/health", headers={"Origin": origin})
        if response.headers.get("access-control-allow-credentials") == "true":
            assert response.headers["access-control-allow-origin"] != "*"


class TestDocs:
    async def test_api_v1_docs_redirects(self, client: AsyncClient) -> None:
        response = await client.get("/api/v1/docs")
        assert response.status_code in (301, 302, 307, 308)
        assert response.headers["location"] == "/docs"

    @pytest.mark.parametrize(("path", "marker"), [("/docs", "swagger-ui"), ("/redoc", "redoc")])
    async def test_docs_pages(self, client: AsyncClient, path: str, marker: str) -> None:
        response = await client.get(path)
        assert response.status_code == 200
        assert "text/html" in response.headers["content-type"]
        assert marker in response.text.lower()

    async def test_openapi_document(self, client: AsyncClient) -> None:
        response = await client.get("/openapi.json")
        assert response.status_code == 200
        spec = response.json()
        assert spec["openapi"].startswith("3.")
        assert "/health" in spec["paths"]
        assert "/api/v1/auth/token" in spec["paths"]

    async def test_swagger_oauth2_password_flow(self, client: AsyncClient) -> None:
        spec = (await client.get("/openapi.json")).json()
        schemes = spec["components"]["securitySchemes"].values()
        flows = [s["flows"]["password"]["tokenUrl"] for s in schemes if s.get("type") == "oauth2"]
        assert flows == ["/api/v1/auth/token"]


class TestTrailingSlash:
    @pytest.mark.parametrize("path", ["/health", "/health/", "/ready/", "/openapi.json/"])
    async def test_root_paths(self, client: AsyncClient, path: str) -> None:
        response = await client.get(path)
        assert response.status_code == 200
        assert "location" not in response.headers

    async def test_api_paths_with_and_without_slash(self, client: AsyncClient, factory: object) -> None:
        owner = await factory.actor("owner")  # type: ignore[attr-defined]
        plain = await client.get("/api/v1/organizations", headers=owner.auth)
        slashed = await client.get("/api/v1/organizations/", headers=owner.auth)
        assert plain.status_code == slashed.status_code == 200
        assert plain.json() == slashed.json()

    async def test_post_with_slash_is_not_redirected(self, client: AsyncClient) -> None:
        response = await client.post(LOGIN + "/", json={})
        assert response.status_code == 422
