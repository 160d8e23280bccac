"""`GET /users` for the corporate portal (§11, §18): a bare list, the total in `X-Total-Count`."""

from __future__ import annotations

import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import ApiKey, Organization, User
from tests.factories import Factory, add_member, assert_problem, login, make_api_key


async def portal_org(factory: Factory) -> tuple[Organization, list[User], str, ApiKey]:
    """An organization with two active members, one inactive member and a `users:read` key."""
    db = factory.db
    org = await factory.org()
    active = [
        await factory.user(full_name="Иван Иванов", email="ivan@example.com"),
        await factory.user(full_name="Пётр Петров"),
    ]
    inactive = await factory.user(is_active=False)
    for user in [*active, inactive]:
        await add_member(db, org, user, "member")
    key, raw = await make_api_key(db, org, ["users:read"], created_by_id=active[0].id)
    return org, active, raw, key


class TestListUsers:
    async def test_api_key_lists_the_active_users_of_its_organization(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        _, active, raw, key = await portal_org(factory)
        elsewhere = await factory.actor("owner")  # another organization's member

        response = await client.get("/users", headers={"X-API-Key": raw})

        assert response.status_code == 200, response.text
        assert response.headers["x-total-count"] == "2"
        assert response.headers["cache-control"] == "no-store"
        assert response.json() == [{"id": u.id, "name": u.full_name, "email": u.email} for u in active]
        assert response.json()[0] == {"id": active[0].id, "name": "Иван Иванов", "email": "ivan@example.com"}
        assert elsewhere.user.email not in response.text
        stored = await db.get(ApiKey, key.id, populate_existing=True)
        assert stored is not None
        assert stored.last_used_at is not None

    async def test_pages_with_limit_and_offset(self, client: AsyncClient, factory: Factory) -> None:
        _, active, raw, _ = await portal_org(factory)

        response = await client.get("/users", params={"limit": 1, "offset": 1}, headers={"X-API-Key": raw})

        assert response.status_code == 200
        assert response.headers["x-total-count"] == "2"
        assert [u["id"] for u in response.json()] == [active[1].id]

    async def test_offset_past_the_end_is_an_empty_list(self, client: AsyncClient, factory: Factory) -> None:
        _, _, raw, _ = await portal_org(factory)

        response = await client.get("/users", params={"offset": 10}, headers={"X-API-Key": raw})

        assert response.status_code == 200
        assert response.json() == []
        assert response.headers["x-total-count"] == "2"

    @pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 201}, {"offset": -1}, {"limit": "all"}])
    async def test_bad_paging_is_a_validation_error(
        self, client: AsyncClient, factory: Factory, params: dict[str, object]
    ) -> None:
        _, _, raw, _ = await portal_org(factory)

        response = await client.get("/users", params=params, headers={"X-API-Key": raw})

        assert_problem(response, 422, "validation_error")

    async def test_trailing_slash_answers_the_same(self, client: AsyncClient, factory: Factory) -> None:
        _, active, raw, _ = await portal_org(factory)

        response = await client.get("/users/", headers={"X-API-Key": raw})

        assert response.status_code == 200
        assert len(response.json()) == len(active)

    async def test_key_without_users_read_is_forbidden(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        org = await factory.org()
        _, raw = await make_api_key(db, org, ["contacts:read", "members:read"])

        response = await client.get("/users", headers={"X-API-Key": raw})

        body = assert_problem(response, 403, "permission_denied")
        assert "users:read" in body["detail"]
        assert "x-total-count" not in response.headers

    async def test_superuser_token_lists_every_active_user(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        _, active, _, _ = await portal_org(factory)
        other_org_member = await factory.actor("owner")
        no_org = await factory.user()
        admin = await factory.actor("member", is_superuser=True)

        response = await client.get("/users", params={"limit": 200}, headers=admin.auth)

        assert response.status_code == 200, response.text
        body = response.json()
        ids = [u["id"] for u in body]
        stored_active = set((await db.execute(select(User.id).where(User.is_active.is_(True)))).scalars())
        assert set(ids) == stored_active
        assert {*(u.id for u in active), other_org_member.user.id, no_org.id, admin.user.id} <= set(ids)
        assert ids == sorted(ids)
        assert all(set(u) == {"id", "name", "email"} for u in body)
        assert response.headers["x-total-count"] == str(len(stored_active))

    async def test_superuser_list_leaves_out_inactive_users(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        inactive = await factory.user(is_active=False)
        admin = await factory.actor("member", is_superuser=True)

        response = await client.get("/users", params={"limit": 200}, headers=admin.auth)

        assert inactive.id not in [u["id"] for u in response.json()]

    async def test_non_superuser_token_is_forbidden(self, client: AsyncClient, factory: Factory) -> None:
        owner = await factory.actor("owner")

        response = await client.get("/users", headers=owner.headers)

        assert_problem(response, 403, "permission_denied")

    async def test_no_credentials_is_unauthorized(self, client: AsyncClient) -> None:
        response = await client.get("/users")

        assert_problem(response, 401, "not_authenticated")
        assert "www-authenticate" in response.headers

    @pytest.mark.parametrize("value", ["crm_nope_nope", "garbage"])
    async def test_bad_key_is_unauthorized(self, client: AsyncClient, value: str) -> None:
        response = await client.get("/users", headers={"X-API-Key": value})

        assert_problem(response, 401, "invalid_api_key")

    async def test_bad_bearer_token_is_unauthorized(self, client: AsyncClient) -> None:
        response = await client.get("/users", headers={"Authorization": "Bearer not-a-jwt"})

        assert_problem(response, 401, "invalid_token")

    async def test_revoked_superuser_session_is_unauthorized(
        self, client: AsyncClient, factory: Factory
    ) -> None:
        user = await factory.user(is_superuser=True)
        await factory.db.commit()
        admin = await login(client, user)
        assert (await client.post("/api/v1/auth/logout", headers=admin.auth)).status_code == 204

        response = await client.get("/users", headers=admin.auth)

        assert_problem(response, 401, "invalid_token")
