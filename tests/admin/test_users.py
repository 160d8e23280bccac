from __future__ import annotations

from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import User, UserSession
from tests.factories import Factory, assert_problem, login

USERS = "/api/v1/admin/users"


async def superuser(factory: Factory) -> object:
    return await factory.actor("owner", is_superuser=True)


class TestList:
    async def test_lists_every_user_with_filters(self, client: AsyncClient, factory: Factory) -> None:
        admin = await superuser(factory)
        other = await factory.user(full_name="Zoe Quartermain", email="zoe.q@example.com")
        inactive = await factory.user(is_active=False)
        await factory.db.commit()

        response = await client.get(USERS, headers=admin.auth)
        assert response.status_code == 200
        body = response.json()
        ids = [u["id"] for u in body["items"]]
        assert {admin.user.id, other.id, inactive.id} <= set(ids)
        assert body["total"] == len(ids)
        assert body["limit"] == 50
        assert body["offset"] == 0
        item = next(u for u in body["items"] if u["id"] == other.id)
        assert item == {
            "id": other.id,
            "email": "zoe.q@example.com",
            "full_name": "Zoe Quartermain",
            "is_active": True,
            "is_superuser": False,
            "last_login_at": None,
            "created_at": item["created_at"],
        }
        assert "password_hash" not in response.text

        response = await client.get(USERS, params={"q": "quarterm"}, headers=admin.auth)
        assert [u["id"] for u in response.json()["items"]] == [other.id]
        response = await client.get(USERS, params={"is_active": "false"}, headers=admin.auth)
        assert [u["id"] for u in response.json()["items"]] == [inactive.id]
        response = await client.get(USERS, params={"limit": 1, "offset": 1}, headers=admin.auth)
        assert len(response.json()["items"]) == 1

    async def test_non_superuser_forbidden(self, client: AsyncClient, factory: Factory) -> None:
        owner = await factory.actor("owner")
        target = await factory.user()
        await factory.db.commit()
        assert_problem(await client.get(USERS, headers=owner.headers), 403, "permission_denied")
        response = await client.patch(f"{USERS}/{target.id}", json={"is_superuser": True}, headers=owner.auth)
        assert_problem(response, 403, "permission_denied")
        assert_problem(await client.get(USERS), 401, "not_authenticated")


class TestUpdate:
    async def test_deactivation_kills_access_token_at_once(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await superuser(factory)
        victim = await factory.actor("manager")
        assert (await client.get("/api/v1/contacts", headers=victim.headers)).status_code == 200
        assert (await client.get("/api/v1/auth/me", headers=victim.auth)).status_code == 200

        response = await client.patch(
            f"{USERS}/{victim.user.id}", json={"is_active": False}, headers=admin.auth
        )

        assert response.status_code == 200, response.text
        assert response.json()["is_active"] is False
        assert_problem(await client.get("/api/v1/contacts", headers=victim.headers), 401, "invalid_token")
        assert_problem(await client.get("/api/v1/auth/me", headers=victim.auth), 401, "invalid_token")
        refresh = await client.post("/api/v1/auth/refresh", json={"refresh_token": victim.refresh_token})
        assert refresh.status_code == 401
        db.expunge_all()
        sessions = (await db.scalars(select(UserSession).where(UserSession.user_id == victim.user.id))).all()
        assert sessions
        assert all(s.revoked_at is not None for s in sessions)
        assert (await db.get(User, victim.user.id)).is_active is False  # type: ignore[union-attr]
        login_again = await client.post(
            "/api/v1/auth/login", json={"email": victim.user.email, "password": "Unusual-Passw0rd-42"}
        )
        assert login_again.status_code in (401, 403)

    async def test_reactivate_and_grant_superuser(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await superuser(factory)
        user = await factory.user(is_active=False)
        await factory.db.commit()
        response = await client.patch(
            f"{USERS}/{user.id}", json={"is_active": True, "is_superuser": True}, headers=admin.auth
        )
        assert response.status_code == 200
        assert response.json()["is_active"] is True
        assert response.json()["is_superuser"] is True
        again = await login(client, user)
        assert (await client.get(USERS, headers=again.auth)).status_code == 200

    async def test_cannot_deactivate_or_demote_self(
        self, client: AsyncClient, factory: Factory, db: AsyncSession
    ) -> None:
        admin = await superuser(factory)
        for body in ({"is_active": False}, {"is_superuser": False}):
            response = await client.patch(f"{USERS}/{admin.user.id}", json=body, headers=admin.auth)
            assert_problem(response, 409, "cannot_change_self")
        db.expunge_all()
        me = await db.get(User, admin.user.id)
        assert me is not None
        assert me.is_active
        assert me.is_superuser
        assert (await client.get(USERS, headers=admin.auth)).status_code == 200

    async def test_unknown_user_and_bad_body(self, client: AsyncClient, factory: Factory) -> None:
        admin = await superuser(factory)
        response = await client.patch(f"{USERS}/999999999", json={"is_active": False}, headers=admin.auth)
        assert_problem(response, 404, "not_found")
        response = await client.patch(f"{USERS}/{admin.user.id}", json={"email": "x@y.z"}, headers=admin.auth)
        assert_problem(response, 422, "validation_error")
