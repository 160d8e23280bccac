"""Tenant resolution: `X-Organization-ID` routes (§3) and `/organizations/{id}/…` routes (§19.8).

`GET /api/v1/api-keys` stands in for every `X-Organization-ID` route."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Contact, Organization, User
from tests.factories import Factory, add_member, assert_problem, login, make_api_key

TENANT_ROUTE = "/api/v1/api-keys"


class TestTenantHeader:
    async def test_member_with_the_header_gets_in(self, client: AsyncClient, factory: Factory) -> None:
        owner = await factory.actor("owner")

        response = await client.get(TENANT_ROUTE, headers=owner.headers)

        assert response.status_code == 200, response.text
        assert response.json() == {"items": [], "total": 0, "limit": 50, "offset": 0}

    async def test_missing_header_with_one_membership_acts_in_it(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        """§20.1: a single-organization client need not send the header."""
        owner = await factory.actor("owner")
        created = await client.post("/api/v1/contacts", json={"full_name": "Solo"}, headers=owner.auth)
        assert created.status_code == 201, created.text

        response = await client.get("/api/v1/contacts", headers=owner.auth)

        assert response.status_code == 200, response.text
        assert [c["full_name"] for c in response.json()["items"]] == ["Solo"]
        stored = await factory.db.get(Contact, created.json()["id"])
        assert stored is not None
        assert stored.organization_id == owner.org_id

    async def test_missing_header_with_several_memberships_lists_them(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        owner = await factory.actor("owner")
        second = await factory.org(name="Second Org")
        await add_member(factory.db, second, owner.user, "manager")
        await factory.db.commit()

        response = await client.get(TENANT_ROUTE, headers=owner.auth)

        body = assert_problem(response, 400, "organization_required")
        first = await factory.db.get(Organization, owner.org_id)
        assert first is not None
        assert body["organizations"] == sorted(
            [{"id": first.id, "name": first.name}, {"id": second.id, "name": "Second Org"}],
            key=lambda o: o["id"],
        )
        created = await client.post("/api/v1/contacts", json={"full_name": "Nowhere"}, headers=owner.auth)
        assert_problem(created, 400, "organization_required")
        assert await factory.db.scalar(select(func.count()).select_from(Contact)) == 0

    async def test_missing_header_without_membership_is_a_bad_request(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        user = await factory.user()
        await factory.db.commit()
        actor = await login(client, user)

        response = await client.get(TENANT_ROUTE, headers=actor.auth)

        body = assert_problem(response, 400, "organization_required")
        assert body["organizations"] == []

    async def test_another_organization_is_not_a_member(self, client: AsyncClient, factory: Factory) -> None:
        other = await factory.org()
        await make_api_key(factory.db, other, ["contacts:read"], name="secret-of-b")
        owner = await factory.actor("owner")

        response = await client.get(TENANT_ROUTE, headers={**owner.auth, "X-Organization-ID": str(other.id)})

        assert_problem(response, 403, "not_a_member")
        assert "secret-of-b" not in response.text

    async def test_unknown_organization_is_not_a_member(self, client: AsyncClient, factory: Factory) -> None:
        owner = await factory.actor("owner")

        response = await client.get(TENANT_ROUTE, headers={**owner.auth, "X-Organization-ID": "987654321"})

        assert_problem(response, 403, "not_a_member")

    @pytest.mark.parametrize("value", ["abc", "1.5", "0", "-3", "99999999999999999999", ""])
    async def test_non_integer_or_out_of_range_is_a_validation_error(
        self, client: AsyncClient, factory: Factory, value: str
    ) -> None:
        owner = await factory.actor("owner")

        response = await client.get(TENANT_ROUTE, headers={**owner.auth, "X-Organization-ID": value})

        assert_problem(response, 422, "validation_error")

    async def test_deleted_organization_is_not_a_member(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        await db.execute(
            update(Organization).where(Organization.id == owner.org_id).values(deleted_at=datetime.now(UTC))
        )

        response = await client.get(TENANT_ROUTE, headers=owner.headers)

        assert_problem(response, 403, "not_a_member")

    async def test_superuser_is_not_a_member_of_every_organization(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        other = await factory.org()
        admin = await factory.actor("owner", is_superuser=True)

        response = await client.get(TENANT_ROUTE, headers={**admin.auth, "X-Organization-ID": str(other.id)})

        assert_problem(response, 403, "not_a_member")

    async def test_deactivated_user_is_refused(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        owner = await factory.actor("owner")
        await db.execute(update(User).where(User.id == owner.user.id).values(is_active=False))

        response = await client.get(TENANT_ROUTE, headers=owner.headers)

        assert_problem(response, 401, "invalid_token")

    async def test_no_credentials_is_unauthorized(self, client: AsyncClient, factory: Factory) -> None:
        org = await factory.org()

        response = await client.get(TENANT_ROUTE, headers={"X-Organization-ID": str(org.id)})

        assert_problem(response, 401, "not_authenticated")
        assert response.headers["www-authenticate"] == "Bearer"

    async def test_bad_bearer_token_is_unauthorized(self, client: AsyncClient, factory: Factory) -> None:
        org = await factory.org()

        response = await client.get(
            TENANT_ROUTE, headers={"Authorization": "Bearer nonsense", "X-Organization-ID": str(org.id)}
        )

        assert_problem(response, 401, "invalid_token")


class TestTenantFromApiKey:
    async def test_key_acts_in_its_own_organization_without_the_header(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await factory.org()
        key, raw = await make_api_key(db, org, ["api_keys:manage"])

        response = await client.get(TENANT_ROUTE, headers={"X-API-Key": raw})

        assert response.status_code == 200, response.text
        assert [k["id"] for k in response.json()["items"]] == [key.id]

    async def test_key_with_its_own_organization_in_the_header(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await factory.org()
        _, raw = await make_api_key(db, org, ["api_keys:manage"])

        response = await client.get(
            TENANT_ROUTE, headers={"X-API-Key": raw, "X-Organization-ID": str(org.id)}
        )

        assert response.status_code == 200

    async def test_key_with_another_organization_in_the_header_is_not_a_member(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org, other = await factory.org(), await factory.org()
        _, raw = await make_api_key(db, org, ["api_keys:manage"])

        response = await client.get(
            TENANT_ROUTE, headers={"X-API-Key": raw, "X-Organization-ID": str(other.id)}
        )

        assert_problem(response, 403, "not_a_member")


class TestPathTenant:
    async def test_non_member_gets_not_found_not_forbidden(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        org = await factory.org()
        outsider = await factory.actor("owner")

        for path in ("", "/members"):
            response = await client.get(f"/api/v1/organizations/{org.id}{path}", headers=outsider.auth)
            assert_problem(response, 404, "not_found")

    async def test_member_lacking_the_permission_is_forbidden(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        member = await factory.actor("member")

        response = await client.put(
            f"/api/v1/organizations/{member.org_id}", json={"name": "X"}, headers=member.auth
        )

        body = assert_problem(response, 403, "permission_denied")
        assert "organization:update" in body["detail"]

    async def test_header_of_another_organization_does_not_matter(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        other = await factory.org()
        member = await factory.actor("member")

        response = await client.get(
            f"/api/v1/organizations/{member.org_id}",
            headers={**member.auth, "X-Organization-ID": str(other.id)},
        )

        assert response.status_code == 200
        assert response.json()["id"] == member.org_id

    async def test_logged_out_session_is_refused(self, client: AsyncClient, factory: Factory) -> None:
        member = await factory.actor("member")
        assert (await client.post("/api/v1/auth/logout", headers=member.auth)).status_code == 204

        response = await client.get(f"/api/v1/organizations/{member.org_id}", headers=member.auth)

        assert_problem(response, 401, "invalid_token")

    async def test_new_login_sees_a_new_membership_at_once(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await factory.org()
        owner = await factory.actor("owner", org=org)
        newcomer = await factory.user()
        await db.commit()
        actor = await login(client, newcomer)
        assert (await client.get(f"/api/v1/organizations/{org.id}", headers=actor.auth)).status_code == 404

        await client.post(
            f"/api/v1/organizations/{org.id}/members", json={"email": newcomer.email}, headers=owner.auth
        )

        assert (await client.get(f"/api/v1/organizations/{org.id}", headers=actor.auth)).status_code == 200
