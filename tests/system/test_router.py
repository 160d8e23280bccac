"""`/health`, `/ready` and `/metrics` (system/router.py)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from crm.config import Settings
from crm.core.security import create_token
from crm.main import create_app

UNREACHABLE_DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:1/x"
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
async def app_without(settings: Settings, request: pytest.FixtureRequest) -> AsyncIterator[AsyncClient]:
    """A separate app whose PostgreSQL or Redis (per `request.param`) points at a closed port."""
    field, url = request.param
    application: FastAPI = create_app(settings.model_copy(update={field: url}))
    async with application.router.lifespan_context(application):
        transport = ASGITransport(app=application)
        async with AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


class TestHealth:
    async def test_exact_body(self, client: AsyncClient) -> None:
        response = await client.get("/health")
        assert response.status_code == 200
        assert response.json() == {"status": "healthy", "service": "CRM API"}

    @pytest.mark.parametrize(
        "app_without", [("database_url", UNREACHABLE_DATABASE)], indirect=True, ids=["db-down"]
    )
    async def test_needs_no_dependency(self, app_without: AsyncClient) -> None:
        response = await app_without.get("/health")
        assert response.status_code == 200
        assert response.json() == {"status": "healthy", "service": "CRM API"}


class TestReady:
    async def test_ready_with_database_and_redis(self, client: AsyncClient) -> None:
        response = await client.get("/ready")
        assert response.status_code == 200
        assert response.json() == {"status": "ready", "database": "ok", "redis": "ok"}

    @pytest.mark.parametrize(
        "app_without", [("database_url", UNREACHABLE_DATABASE)], indirect=True, ids=["db-down"]
    )
    async def test_database_down_is_503(self, app_without: AsyncClient) -> None:
        response = await app_without.get("/ready")
        assert response.status_code == 503
        assert response.json() == {"status": "unavailable", "database": "down", "redis": "ok"}

    @pytest.mark.parametrize(
        "app_without", [("redis_url", UNREACHABLE_REDIS)], indirect=True, ids=["redis-down"]
    )
    async def test_redis_down_is_degraded_200(self, app_without: AsyncClient) -> None:
        response = await app_without.get("/ready")
        assert response.status_code == 200
        assert response.json() == {"status": "degraded", "database": "ok", "redis": "down"}


class TestDatabaseDown:
    """PostgreSQL unreachable: database-backed endpoints answer 503 problem+json quickly, never 500."""

    @pytest.mark.parametrize(
        "app_without", [("database_url", UNREACHABLE_DATABASE)], indirect=True, ids=["db-down"]
    )
    @pytest.mark.parametrize(
        ("method", "path", "body"),
        [
            ("POST", "/api/v1/auth/login", {"email": "someone@example.com", "password": "whatever-it-is"}),
            (
                "POST",
                "/api/v1/auth/register",
                {"email": "new@example.com", "password": "Unusual-Passw0rd-42", "full_name": "New"},
            ),
        ],
        ids=["login", "register"],
    )
    async def test_503_problem(
        self, app_without: AsyncClient, method: str, path: str, body: dict[str, str]
    ) -> None:
        start = time.monotonic()
        response = await app_without.request(method, path, json=body)
        elapsed = time.monotonic() - start
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["status"] == 503
        assert problem["code"] == "database_unavailable"
        assert "Retry-After" in response.headers
        assert elapsed < 10

    @pytest.mark.parametrize(
        "app_without", [("database_url", UNREACHABLE_DATABASE)], indirect=True, ids=["db-down"]
    )
    async def test_authenticated_request_is_503_not_401(
        self, app_without: AsyncClient, settings: Settings
    ) -> None:
        """A well-signed token whose session cannot be checked is not "unauthenticated"."""
        token, _ = create_token(settings, user_id=1, session_id=424242, type="access")
        start = time.monotonic()
        response = await app_without.get(
            "/api/v1/organizations", headers={"Authorization": f"Bearer {token}"}
        )
        assert time.monotonic() - start < 10
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"

    @pytest.mark.parametrize(
        "app_without", [("database_url", UNREACHABLE_DATABASE)], indirect=True, ids=["db-down"]
    )
    async def test_no_traceback_or_sql_in_body(self, app_without: AsyncClient) -> None:
        response = await app_without.post(
            "/api/v1/auth/login", json={"email": "someone@example.com", "password": "whatever-it-is"}
        )
        text = response.text.lower()
        for leak in ("traceback", "select ", "asyncpg", "127.0.0.1", "connect call failed"):
            assert leak not in text


class TestMetrics:
    async def test_counters_use_route_templates(self, client: AsyncClient) -> None:
        await client.get("/api/v1/organizations/987654", headers={"Authorization": "Bearer nonsense"})
        await client.get("/health")
        response = await client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        text = response.text
        assert (
            'crm_http_requests_total{method="GET",route="/api/v1/organizations/{organization_id}",'
            'status="401"}' in text
        )
        assert 'crm_http_requests_total{method="GET",route="/health",status="200"}' in text
        assert "987654" not in text

    async def test_unmatched_paths_are_one_label(self, client: AsyncClient) -> None:
        await client.get("/no/such/path/4242")
        text = (await client.get("/metrics")).text
        assert 'route="<unmatched>",status="404"' in text
        assert "/no/such/path" not in text

    async def test_latency_histogram(self, client: AsyncClient) -> None:
        await client.get("/health")
        text = (await client.get("/metrics")).text
        assert "# TYPE crm_http_request_duration_seconds histogram" in text
        assert 'crm_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/health"}' in text
        assert 'crm_http_request_duration_seconds_count{method="GET",route="/health"}' in text
        assert "crm_http_requests_in_flight" in text
