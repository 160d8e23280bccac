"""Authenticating `X-API-Key` values (`authenticate_api_key`), seen through the routes that use it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from httpx import AsyncClient
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import ApiKey, Organization
from tests.factories import Factory, assert_problem, make_api_key

TENANT_ROUTE = "/api/v1/api-keys"


class TestAuthenticateApiKey:
    async def test_valid_key_is_accepted_and_its_use_recorded(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await factory.org()
        key, raw = await make_api_key(db, org, ["api_keys:manage"])

        response = await client.get(TENANT_ROUTE, headers={"X-API-Key": raw})

        assert response.status_code == 200, response.text
        stored = await db.get(ApiKey, key.id, populate_existing=True)
        assert stored is not None
        assert stored.last_used_at is not None

    async def test_expired_key_is_refused(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await factory.org()
        _, raw = await make_api_key(
            db, org, ["api_keys:manage"], expires_at=datetime.now(UTC) - timedelta(seconds=1)
        )

        response = await client.get(TENANT_ROUTE, headers={"X-API-Key": raw})

        assert_problem(response, 401, "invalid_api_key")
        assert response.headers["www-authenticate"] == "ApiKey"

    async def test_key_stops_working_when_it_expires(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await factory.org()
        key, raw = await make_api_key(
            db, org, ["api_keys:manage"], expires_at=datetime.now(UTC) + timedelta(hours=1)
        )
        assert (await client.get(TENANT_ROUTE, headers={"X-API-Key": raw})).status_code == 200

        await db.execute(
            update(ApiKey)
            .where(ApiKey.id == key.id)
            .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )

        assert_problem(await client.get(TENANT_ROUTE, headers={"X-API-Key": raw}), 401, "invalid_api_key")

    async def test_key_of_a_deleted_organization_is_refused(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await factory.org()
        owner = await factory.actor("owner", org=org)
        _, raw = await make_api_key(db, org, ["api_keys:manage", "users:read", "organization:read"])
        assert (await client.get(TENANT_ROUTE, headers={"X-API-Key": raw})).status_code == 200

        assert (await client.delete(f"/api/v1/organizations/{org.id}", headers=owner.auth)).status_code == 204

        assert_problem(await client.get(TENANT_ROUTE, headers={"X-API-Key": raw}), 401, "invalid_api_key")
        assert_problem(await client.get("/users", headers={"X-API-Key": raw}), 401, "invalid_api_key")
        assert_problem(
            await client.get(f"/api/v1/organizations/{org.id}", headers={"X-API-Key": raw}),
            401,
            "invalid_api_key",
        )
        stored = await db.get(Organization, org.id, populate_existing=True)
        assert stored is not None
        assert stored.deleted_at is not None

    @pytest.mark.parametrize(
        "value",
        [
            "nonsense",
            "crm_",
            "crm_abc",
            "crm_abc_",
            "crm__secret",
            "crm_" + "a" * 300,
            "Bearer crm_x_y",
        ],
    )
    async def test_malformed_key_is_refused(self, client: AsyncClient, value: str) -> None:
        assert_problem(await client.get(TENANT_ROUTE, headers={"X-API-Key": value}), 401, "invalid_api_key")

    async def test_right_prefix_with_a_wrong_secret_is_refused(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await factory.org()
        key, raw = await make_api_key(db, org, ["api_keys:manage"])
        forged = f"crm_{key.prefix}_{'A' * 43}"
        assert forged != raw

        assert_problem(await client.get(TENANT_ROUTE, headers={"X-API-Key": forged}), 401, "invalid_api_key")
        stored = await db.get(ApiKey, key.id, populate_existing=True)
        assert stored is not None
        assert stored.last_used_at is None

    async def test_surrounding_whitespace_is_ignored(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await factory.org()
        _, raw = await make_api_key(db, org, ["api_keys:manage"])

        response = await client.get(TENANT_ROUTE, headers={"X-API-Key": f"  {raw}  "})

        assert response.status_code == 200
